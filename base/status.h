// Status and Result<T>: how every fallible operation that a client, a config file, a model file or
// a plugin can trigger reports failure. Exceptions stay inside a component; what crosses a
// component boundary is a Status with a message that says what was wrong and what to do about it.
//
// Thread safety: value types; a const Status/Result may be read from several threads.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace zaya {

// Codes double as the protocol's error codes (docs/protocol.md), so keep the names stable.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller's input is malformed or out of range
  kNotFound,            // a file, tensor, key or request that should exist does not
  kFailedPrecondition,  // the system is not in a state that allows the call
  kOutOfRange,          // e.g. a prompt longer than the context
  kOverBudget,          // would exceed a memory budget
  kBusy,                // queue full; try again later
  kCancelled,
  kDeadlineExceeded,
  kUnimplemented,
  kDataLoss,     // a file is truncated or corrupt
  kInternal,     // a bug in zayad
  kUnavailable,  // a device or backend cannot be used
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "invalid_argument: <message>"
  std::string ToString() const;

  // Prefixes context ("reading model.safetensors: ") to the message; no-op on Ok.
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status OverBudget(std::string m) { return {StatusCode::kOverBudget, std::move(m)}; }
inline Status Busy(std::string m) { return {StatusCode::kBusy, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }

// Result<T> holds either a value or a non-Ok Status. Access to value() on an error is a programmer
// error (asserted).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result constructed from an Ok status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace zaya

// Early-return helpers; keep call sites short without hiding control flow behind exceptions.
#define ZAYA_CONCAT_INNER(a, b) a##b
#define ZAYA_CONCAT(a, b) ZAYA_CONCAT_INNER(a, b)

#define ZAYA_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::zaya::Status zaya_status_ = (expr);        \
    if (!zaya_status_.ok()) return zaya_status_; \
  } while (0)

#define ZAYA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#define ZAYA_ASSIGN_OR_RETURN(lhs, expr) \
  ZAYA_ASSIGN_OR_RETURN_IMPL(ZAYA_CONCAT(zaya_result_, __LINE__), lhs, expr)
