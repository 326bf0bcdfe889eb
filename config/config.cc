#include "config/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <toml.hpp>
#include <utility>
#include <vector>

#include "config/aggregation_template.h"

namespace zaya {
namespace {

using std::chrono::milliseconds;

// toml11 recurses once per nesting level of arrays/inline tables and per component of a dotted key,
// so hostile input could overflow the stack; a zayad config needs neither deeply.
constexpr int kMaxNesting = 16;
constexpr int kMaxDotsPerLine = 32;
constexpr size_t kMaxStringBytes = 64 * 1024;
constexpr size_t kMaxRegexBytes = 1024;
constexpr size_t kMaxReportedProblems = 20;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = kKiB * 1024;
constexpr uint64_t kGiB = kMiB * 1024;
constexpr uint64_t kTiB = kGiB * 1024;

constexpr std::string_view kSections[] = {"model", "backend", "memory", "scheduler",
                                          "rsa",   "ipc",     "log"};

// ---------------------------------------------------------------------------------------------
// Small text helpers.

std::string Quote(std::string_view s, size_t max_bytes = 80) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (n++ == max_bytes) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

// TOML basic string, complete (no truncation): for FormatConfig.
std::string TomlString(std::string_view s) { return Quote(s, std::string_view::npos); }

std::string FormatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  std::string out(buf, ec == std::errc() ? end : buf);
  if (out.find_first_of(".eEn") == std::string::npos) out += ".0";
  return out;
}

std::string_view TypeName(const toml::value& v) {
  switch (v.type()) {
    case toml::value_t::string:
      return "string";
    case toml::value_t::integer:
      return "integer";
    case toml::value_t::floating:
      return "float";
    case toml::value_t::boolean:
      return "boolean";
    case toml::value_t::array:
      return "array";
    case toml::value_t::table:
      return "table";
    case toml::value_t::empty:
      return "empty";
    default:
      return "date/time";
  }
}

// An integer as the file spells it when toml11 saturated it: one that does not fit 64 bits reads as
// INT64_MAX or INT64_MIN, and a message quoting that would name a number the file does not hold.
std::string RenderInteger(const toml::value& v) {
  const int64_t x = v.as_integer();
  if (x == INT64_MAX || x == INT64_MIN) {
    const toml::source_location loc = v.location();
    const std::string& line = loc.line_str();
    const size_t start = loc.column() - 1;
    if (loc.column() >= 1 && loc.region() >= 1 && start + loc.region() <= line.size()) {
      return line.substr(start, loc.region());
    }
  }
  return std::to_string(x);
}

std::string Render(const toml::value& v) {
  switch (v.type()) {
    case toml::value_t::string:
      return Quote(v.as_string().str);
    case toml::value_t::integer:
      return RenderInteger(v);
    case toml::value_t::floating:
      return FormatDouble(v.as_floating());
    case toml::value_t::boolean:
      return v.as_boolean() ? "true" : "false";
    case toml::value_t::array:
      return "[...]";
    case toml::value_t::table:
      return "{...}";
    default:
      break;
  }
  try {
    std::string s = toml::format(v);
    if (s.size() > 80) s = s.substr(0, 80) + "...";
    return s;
  } catch (const std::exception&) {
    return "<value>";
  }
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The closest candidate when it is plausibly a typo, else empty.
std::string_view Closest(std::string_view word, const std::vector<std::string_view>& candidates) {
  if (word.size() > 64) return {};
  std::string_view best;
  size_t best_distance = std::string_view::npos;
  for (std::string_view c : candidates) {
    const size_t d = EditDistance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  const size_t allowed = std::max<size_t>(2, best.size() / 3);
  return best_distance <= allowed ? best : std::string_view();
}

std::string JoinQuoted(std::initializer_list<std::string_view> items) {
  std::string out;
  size_t i = 0;
  for (std::string_view s : items) {
    if (i > 0) out += (i + 1 == items.size()) ? " or " : ", ";
    out += '"';
    out += s;
    out += '"';
    ++i;
  }
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A non-negative decimal "123" or "1.25" at the front of `s`: its digits without the point and
// the number of digits after the point. Consumes what it parsed.
// Size and duration arithmetic is done in 128 bits so that overflow is detected, not wrapped.
__extension__ typedef unsigned __int128 Wide;

struct Decimal {
  Wide digits = 0;
  int scale = 0;  // digits after the point
};

Result<Decimal> TakeDecimal(std::string_view* s) {
  Decimal d;
  size_t i = 0;
  bool any_digit = false;
  bool point = false;
  for (; i < s->size(); ++i) {
    const char c = (*s)[i];
    if (c >= '0' && c <= '9') {
      any_digit = true;
      // 10^20 times the largest unit (1 TB or 1 h) still fits in 128 bits.
      if (d.digits > static_cast<Wide>(UINT64_MAX) * 10) {
        return InvalidArgument("is too large");
      }
      d.digits = d.digits * 10 + static_cast<unsigned>(c - '0');
      if (point) ++d.scale;
      if (d.scale > 9) return InvalidArgument("has more than 9 digits after the decimal point");
    } else if (c == '.') {
      if (point) return InvalidArgument("has more than one decimal point");
      point = true;
    } else {
      break;
    }
  }
  if (!any_digit) return InvalidArgument("does not start with a number");
  s->remove_prefix(i);
  return d;
}

Wide Pow10(int n) {
  Wide p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

constexpr std::string_view kSizeUnitsHelp =
    "use a whole number of bytes or a number with a unit B, KiB, MiB, GiB or TiB (KB, MB, GB, TB "
    "are powers of 1000), e.g. \"512MiB\"";
constexpr std::string_view kDurationUnitsHelp =
    "use a number with a unit ms, s, m or h, e.g. \"250ms\", \"30s\" or \"1m30s\"";

// Parses a size; on failure returns a reason without the input text (callers add context).
Result<uint64_t> ParseSizeReason(std::string_view text) {
  std::string_view s = Trim(text);
  if (s.empty()) return InvalidArgument("is empty; " + std::string(kSizeUnitsHelp));
  if (s.front() == '-') return InvalidArgument("is negative; sizes are 0 or more bytes");
  if (s.front() == '+') s.remove_prefix(1);
  auto number = TakeDecimal(&s);
  if (!number.ok())
    return InvalidArgument(number.status().message() + "; " + std::string(kSizeUnitsHelp));
  const std::string_view unit = Trim(s);
  struct Unit {
    std::string_view name;
    uint64_t bytes;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KiB", kKiB},
      {"MiB", kMiB},
      {"GiB", kGiB},
      {"TiB", kTiB},
      {"KB", 1000},
      {"MB", 1000 * 1000},
      {"GB", 1000000000},
      {"TB", 1000000000000ull},
  };
  const Unit* found = nullptr;
  for (const Unit& u : kUnits) {
    if (EqualsIgnoreCase(unit, u.name)) found = &u;
  }
  if (found == nullptr) {
    if (!unit.empty() && (unit.front() == '.' || (unit.front() >= '0' && unit.front() <= '9'))) {
      return InvalidArgument("is not one number followed by a unit; " +
                             std::string(kSizeUnitsHelp));
    }
    return InvalidArgument("has an unknown unit " + Quote(unit) + "; " +
                           std::string(kSizeUnitsHelp));
  }
  const Wide scaled = number->digits * found->bytes;
  const Wide divisor = Pow10(number->scale);
  if (scaled % divisor != 0) {
    return InvalidArgument("is not a whole number of bytes; use a smaller unit");
  }
  const Wide bytes = scaled / divisor;
  if (bytes > UINT64_MAX) return InvalidArgument("is too large (more than 16 EiB)");
  return static_cast<uint64_t>(bytes);
}

Result<milliseconds> ParseDurationReason(std::string_view text) {
  std::string_view s = Trim(text);
  if (s.empty()) return InvalidArgument("is empty; " + std::string(kDurationUnitsHelp));
  if (s.front() == '-') return InvalidArgument("is negative; durations are 0 or more");
  if (s.front() == '+') s.remove_prefix(1);
  Wide total_ms = 0;
  int parts = 0;
  while (!s.empty()) {
    auto number = TakeDecimal(&s);
    if (!number.ok()) {
      return InvalidArgument((parts == 0 ? number.status().message()
                                         : "has something after the unit that is not a number") +
                             std::string("; ") + std::string(kDurationUnitsHelp));
    }
    s = Trim(s);
    size_t n = 0;
    while (n < s.size() && std::isalpha(static_cast<unsigned char>(s[n]))) ++n;
    const std::string_view unit = s.substr(0, n);
    s.remove_prefix(n);
    s = Trim(s);
    uint64_t unit_ms = 0;
    if (unit == "ms") {
      unit_ms = 1;
    } else if (unit == "s") {
      unit_ms = 1000;
    } else if (unit == "m" || unit == "min") {
      unit_ms = 60 * 1000;
    } else if (unit == "h") {
      unit_ms = 3600 * 1000;
    } else if (unit.empty()) {
      if (!s.empty() && s.front() == '.') {
        return InvalidArgument("has more than one decimal point; " +
                               std::string(kDurationUnitsHelp));
      }
      return InvalidArgument("has no unit; " + std::string(kDurationUnitsHelp));
    } else {
      return InvalidArgument("has an unknown unit " + Quote(unit) + "; " +
                             std::string(kDurationUnitsHelp));
    }
    const Wide scaled = number->digits * unit_ms;
    const Wide divisor = Pow10(number->scale);
    if (scaled % divisor != 0) {
      return InvalidArgument("is not a whole number of milliseconds");
    }
    total_ms += scaled / divisor;
    if (total_ms > static_cast<Wide>(INT64_MAX)) {
      return InvalidArgument("is too long");
    }
    ++parts;
  }
  return milliseconds(static_cast<int64_t>(total_ms));
}

// ---------------------------------------------------------------------------------------------
// Validation machinery.

// Problems found in one file, reported together ordered by line.
class Problems {
 public:
  explicit Problems(std::string name) : name_(std::move(name)) {}

  void Add(size_t line, std::string text) { items_.push_back({line, std::move(text)}); }
  bool empty() const { return items_.empty(); }
  const std::string& name() const { return name_; }

  Status ToStatus() {
    std::stable_sort(items_.begin(), items_.end(),
                     [](const Item& a, const Item& b) { return a.line < b.line; });
    std::string message;
    for (size_t i = 0; i < items_.size(); ++i) {
      if (i == kMaxReportedProblems) {
        message += "\n... and " + std::to_string(items_.size() - i) + " more problems";
        break;
      }
      if (i > 0) message += '\n';
      message +=
          name_ + ":" + std::to_string(std::max<size_t>(items_[i].line, 1)) + ": " + items_[i].text;
    }
    return InvalidArgument(std::move(message));
  }

 private:
  struct Item {
    size_t line;
    std::string text;
  };
  std::string name_;
  std::vector<Item> items_;
};

// Reads one [section]: each typed reader leaves the default in place when the key is absent,
// records a problem (and keeps the default) when it is present but wrong. Finish() reports keys
// that no reader asked for.
class Section {
 public:
  Section(Problems& problems, std::string_view name, const toml::value* table)
      : problems_(problems), name_(name), table_(table) {
    if (table_ != nullptr) header_line_ = table_->location().line();
  }

  // Line of `key` when present, else the section header's line (0 when the section is absent).
  size_t Line(std::string_view key) const {
    const toml::value* v = Find(key);
    return v != nullptr ? v->location().line() : header_line_;
  }
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  std::string_view name() const { return name_; }
  const std::vector<std::string_view>& known() const { return known_; }

  void Fail(std::string_view key, const toml::value& v, std::string_view problem) {
    problems_.Add(v.location().line(), "[" + std::string(name_) + "] " + std::string(key) + " = " +
                                           Render(v) + " " + std::string(problem));
    failed_.emplace_back(key);
  }
  bool Failed(std::string_view key) const {
    return std::find(failed_.begin(), failed_.end(), key) != failed_.end();
  }

  void String(std::string_view key, std::string* out, bool allow_empty,
              size_t max_bytes = kMaxStringBytes) {
    const toml::value* v = Begin(key);
    if (v == nullptr) return;
    if (!v->is_string()) return WrongType(key, *v, "a string");
    const std::string& s = v->as_string().str;
    if (!allow_empty && s.empty()) return Fail(key, *v, "is empty; give a value");
    if (s.size() > max_bytes) {
      return Fail(key, *v,
                  "is too long (" + std::to_string(s.size()) + " bytes); at most " +
                      std::to_string(max_bytes) + " bytes are allowed");
    }
    if (s.find('\0') != std::string::npos) return Fail(key, *v, "contains a NUL character");
    *out = s;
  }

  void Enum(std::string_view key, std::string* out,
            std::initializer_list<std::string_view> allowed) {
    const toml::value* v = Begin(key);
    if (v == nullptr) return;
    if (!v->is_string()) return WrongType(key, *v, "one of " + JoinQuoted(allowed));
    const std::string& s = v->as_string().str;
    for (std::string_view a : allowed) {
      if (s == a) {
        *out = s;
        return;
      }
    }
    std::string problem = "is not allowed; use one of " + JoinQuoted(allowed);
    const std::string_view guess = Closest(s, std::vector<std::string_view>(allowed));
    if (!guess.empty()) problem += " (did you mean \"" + std::string(guess) + "\"?)";
    Fail(key, *v, problem);
  }

  template <typename Int>
  void Integer(std::string_view key, Int* out, int64_t lo, int64_t hi,
               std::string_view meaning = {}) {
    const toml::value* v = Begin(key);
    if (v == nullptr) return;
    const std::string range = RangeText(lo, hi, meaning);
    if (!v->is_integer()) {
      if (v->is_floating()) {
        return Fail(key, *v, "is not a whole number; expected an integer, " + range);
      }
      return WrongType(key, *v, "an integer, " + range);
    }
    const int64_t x = v->as_integer();
    if (x < lo) return Fail(key, *v, "is below the minimum " + std::to_string(lo) + "; " + range);
    if (x > hi) return Fail(key, *v, "is above the maximum " + std::to_string(hi) + "; " + range);
    *out = static_cast<Int>(x);
  }

  void Float(std::string_view key, double* out, double lo, double hi, bool lo_exclusive) {
    const toml::value* v = Begin(key);
    if (v == nullptr) return;
    const std::string range = std::string("allowed: ") + (lo_exclusive ? "above " : "from ") +
                              FormatDouble(lo) + " to " + FormatDouble(hi);
    double x = 0;
    if (v->is_floating()) {
      x = v->as_floating();
    } else if (v->is_integer()) {
      x = static_cast<double>(v->as_integer());
    } else {
      return WrongType(key, *v, "a number; " + range);
    }
    if (!std::isfinite(x)) return Fail(key, *v, "is not a finite number; " + range);
    if (x < lo || (lo_exclusive && x == lo) || x > hi)
      return Fail(key, *v, "is out of range; " + range);
    *out = x;
  }

  void Bool(std::string_view key, bool* out) {
    const toml::value* v = Begin(key);
    if (v == nullptr) return;
    if (!v->is_boolean()) return WrongType(key, *v, "true or false");
    *out = v->as_boolean();
  }

  void Size(std::string_view key, uint64_t* out, uint64_t lo, uint64_t hi) {
    const toml::value* v = Begin(key);
    if (v == nullptr) return;
    const std::string range = "allowed: " + FormatSize(lo) + " to " + FormatSize(hi);
    uint64_t bytes = 0;
    if (v->is_integer()) {
      if (v->as_integer() < 0) return Fail(key, *v, "is negative; sizes are 0 or more bytes");
      bytes = static_cast<uint64_t>(v->as_integer());
    } else if (v->is_string()) {
      auto parsed = ParseSizeReason(v->as_string().str);
      if (!parsed.ok()) return Fail(key, *v, "is not a valid size: " + parsed.status().message());
      bytes = *parsed;
    } else {
      return WrongType(key, *v, "a size string such as \"512MiB\"");
    }
    if (bytes < lo) return Fail(key, *v, "is too small; " + range);
    if (bytes > hi) return Fail(key, *v, "is too large; " + range);
    *out = bytes;
  }

  void Duration(std::string_view key, milliseconds* out, milliseconds lo, milliseconds hi) {
    const toml::value* v = Begin(key);
    if (v == nullptr) return;
    const std::string range = "allowed: " + FormatDuration(lo) + " to " + FormatDuration(hi);
    if (v->is_integer() || v->is_floating()) {
      return Fail(key, *v,
                  "has no unit; write it as a string such as \"" + FormatDuration(*out) +
                      "\" (units ms, s, m, h)");
    }
    if (!v->is_string()) return WrongType(key, *v, "a duration string such as \"30s\"");
    auto parsed = ParseDurationReason(v->as_string().str);
    if (!parsed.ok()) {
      return Fail(key, *v, "is not a valid duration: " + parsed.status().message());
    }
    if (*parsed < lo) return Fail(key, *v, "is too short; " + range);
    if (*parsed > hi) return Fail(key, *v, "is too long; " + range);
    *out = *parsed;
  }

  // Reports keys that no reader consumed, suggesting the closest valid key or the section a
  // misplaced key belongs to.
  void Finish(const std::vector<std::pair<std::string_view, std::vector<std::string_view>>>& all) {
    if (table_ == nullptr) return;
    for (const auto& [key, value] : table_->as_table()) {
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::string text = "[" + std::string(name_) + "] unknown key " + Quote(key);
      std::string_view elsewhere;
      for (const auto& [section, keys] : all) {
        if (section != name_ && std::find(keys.begin(), keys.end(), key) != keys.end()) {
          elsewhere = section;
        }
      }
      const std::string_view guess = Closest(key, known_);
      if (!elsewhere.empty()) {
        text += "; it belongs in [" + std::string(elsewhere) + "]";
      } else if (!guess.empty()) {
        text += "; did you mean \"" + std::string(guess) + "\"?";
      } else {
        text += "; valid keys are";
        for (std::string_view k : known_) text += " " + std::string(k);
      }
      problems_.Add(value.location().line(), std::move(text));
    }
  }

 private:
  const toml::value* Find(std::string_view key) const {
    if (table_ == nullptr) return nullptr;
    const auto& t = table_->as_table();
    auto it = t.find(std::string(key));
    return it == t.end() ? nullptr : &it->second;
  }
  const toml::value* Begin(std::string_view key) {
    known_.push_back(key);
    return Find(key);
  }
  void WrongType(std::string_view key, const toml::value& v, const std::string& expected) {
    Fail(key, v, "has the wrong type (" + std::string(TypeName(v)) + "); expected " + expected);
  }
  static std::string RangeText(int64_t lo, int64_t hi, std::string_view meaning) {
    std::string s = "allowed: " + std::to_string(lo) + " to " + std::to_string(hi);
    if (!meaning.empty()) s += " (" + std::string(meaning) + ")";
    return s;
  }

  Problems& problems_;
  std::string_view name_;  // a literal: AllKeys() keeps it beyond the Section
  const toml::value* table_;
  size_t header_line_ = 0;
  std::vector<std::string_view> known_;
  std::vector<std::string> failed_;
};

// Rejects what would make toml11 recurse deeply before it sees the text: nesting of arrays and
// inline tables, and very long dotted keys. Strings and comments are skipped.
Status CheckShape(std::string_view text, Problems& problems) {
  enum class State { kNormal, kComment, kBasic, kLiteral, kMlBasic, kMlLiteral };
  State state = State::kNormal;
  int depth = 0;
  int dots = 0;
  size_t line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      dots = 0;
    }
    switch (state) {
      case State::kNormal:
        if (c == '#') {
          state = State::kComment;
        } else if (c == '"') {
          if (text.substr(i, 3) == "\"\"\"") {
            state = State::kMlBasic;
            i += 2;
          } else {
            state = State::kBasic;
          }
        } else if (c == '\'') {
          if (text.substr(i, 3) == "'''") {
            state = State::kMlLiteral;
            i += 2;
          } else {
            state = State::kLiteral;
          }
        } else if (c == '[' || c == '{') {
          if (++depth > kMaxNesting) {
            problems.Add(line, "arrays or tables are nested more than " +
                                   std::to_string(kMaxNesting) +
                                   " levels deep; a zayad config needs at most 2");
            return problems.ToStatus();
          }
        } else if (c == ']' || c == '}') {
          if (depth > 0) --depth;
        } else if (c == '.') {
          if (++dots > kMaxDotsPerLine) {
            problems.Add(line, "more than " + std::to_string(kMaxDotsPerLine) +
                                   " dots in one line outside strings; a zayad config has no "
                                   "dotted keys that long");
            return problems.ToStatus();
          }
        }
        break;
      case State::kComment:
        if (c == '\n') state = State::kNormal;
        break;
      case State::kBasic:
        if (c == '\\') {
          if (i + 1 < text.size() && text[i + 1] == '\n') ++line;
          ++i;
        } else if (c == '"' || c == '\n') {
          state = State::kNormal;
        }
        break;
      case State::kLiteral:
        if (c == '\'' || c == '\n') state = State::kNormal;
        break;
      case State::kMlBasic:
        if (c == '\\') {
          if (i + 1 < text.size() && text[i + 1] == '\n') ++line;
          ++i;
        } else if (text.substr(i, 3) == "\"\"\"") {
          state = State::kNormal;
          i += 2;
        }
        break;
      case State::kMlLiteral:
        if (text.substr(i, 3) == "'''") {
          state = State::kNormal;
          i += 2;
        }
        break;
    }
  }
  return Status::Ok();
}

// Offset of the first byte that is not part of well-formed UTF-8 (no overlongs, surrogates or code
// points above U+10FFFF), or npos. TOML files are UTF-8, and toml11 3.7 reads out of bounds while
// reporting some invalid sequences, so they are refused before it sees them.
size_t FirstInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      n = 1;
      cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
      n = 2;
      cp = b & 0x0f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 3;
      cp = b & 0x07;
    } else {
      return i;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return i;
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    const uint32_t min_for_length[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

// "[error] toml::parse_key_value_pair: missing key-value separator `=`\n --> ..." -> the
// description after the function name.
std::string SyntaxSummary(const std::string& what) {
  std::string first = what.substr(0, what.find('\n'));
  const std::string_view prefix = "[error] ";
  if (first.compare(0, prefix.size(), prefix) == 0) first.erase(0, prefix.size());
  const size_t colon = first.find(": ");
  if (colon != std::string::npos && first.find(' ') > colon) first.erase(0, colon + 2);
  return first;
}

std::string ResolvePath(const std::string& path, const std::string& config_name) {
  namespace fs = std::filesystem;
  if (path.empty()) return path;
  const fs::path p(path);
  if (p.is_absolute()) return p.lexically_normal().string();
  const fs::path dir = fs::path(config_name).parent_path();
  if (dir.empty()) return path;
  return (dir / p).lexically_normal().string();
}

// Which rule the [rsa] defaults break in a context of `context` tokens, shared by the loader
// (model.max_context) and CheckRsaFitsContext (the loaded model's context). A trace needs the
// question (at least one token) plus budget; an aggregation prompt subset tails plus budget.
enum class RsaMisfit { kNone, kBudget, kAggregation };
RsaMisfit RsaContextMisfit(const RsaConfig& r, int64_t context, int64_t* aggregation) {
  *aggregation = static_cast<int64_t>(r.subset) * r.tail + r.budget;
  if (r.budget >= context) return RsaMisfit::kBudget;
  if (r.mode == "rsa" && r.rounds > 0 && *aggregation >= context) return RsaMisfit::kAggregation;
  return RsaMisfit::kNone;
}

using KeyList = std::vector<std::pair<std::string_view, std::vector<std::string_view>>>;

// Reads every section into `config`; `sections` gives each [name] its table (or null).
void ReadSections(Problems& problems, const toml::value* const tables[7], Config& config,
                  const KeyList& all_keys, KeyList* known_out) {
  Section model(problems, "model", tables[0]);
  model.String("path", &config.model.path, false, 4096);
  model.Enum("weights_dtype", &config.model.weights_dtype, {"bf16", "f32", "int8"});
  model.Enum("kv_dtype", &config.model.kv_dtype, {"auto", "f32", "bf16", "int8"});
  model.Integer("max_context", &config.model.max_context, 0, 1 << 24, "0 = the model's limit");

  Section backend(problems, "backend", tables[1]);
  backend.Enum("kind", &config.backend.kind, {"cpu", "hip", "auto"});
  backend.String("plugin_dir", &config.backend.plugin_dir, true, 4096);
  backend.Integer("threads", &config.backend.threads, 0, 1024, "0 = all online cores");
  backend.Integer("device", &config.backend.device, 0, 255);

  Section memory(problems, "memory", tables[2]);
  memory.Size("weights", &config.memory.weights, kMiB, 1024 * kTiB);
  memory.Size("state", &config.memory.state, kMiB, 1024 * kTiB);
  memory.Size("request", &config.memory.request, kMiB, 1024 * kTiB);
  memory.Integer("kv_block_tokens", &config.memory.kv_block_tokens, 1, 1024);
  memory.Bool("experts_offload", &config.memory.experts_offload);

  Section scheduler(problems, "scheduler", tables[3]);
  scheduler.Integer("max_queue", &config.scheduler.max_queue, 1, 1000000);
  scheduler.Integer("max_running_sequences", &config.scheduler.max_running_sequences, 1, 65536);
  scheduler.Integer("prefill_chunk", &config.scheduler.prefill_chunk, 1, 1 << 20);
  scheduler.Integer("max_step_tokens", &config.scheduler.max_step_tokens, 1, 1 << 20);
  scheduler.Duration("drain_timeout", &config.scheduler.drain_timeout, milliseconds(0),
                     std::chrono::hours(1));

  Section rsa(problems, "rsa", tables[4]);
  RsaConfig& r = config.rsa;
  rsa.Enum("mode", &r.mode, {"single", "parallel", "rsa"});
  rsa.Integer("population", &r.population, 1, 4096, "N");
  rsa.Integer("subset", &r.subset, 1, 4096, "C");
  rsa.Integer("rounds", &r.rounds, 0, 1024, "T; 0 = parallel sampling only");
  rsa.Integer("tail", &r.tail, 1, 1 << 24, "tau, tokens");
  rsa.Integer("budget", &r.budget, 1, 1 << 24, "beta, tokens per trace");
  rsa.Float("temperature", &r.temperature, 0.0, kMaxTemperature, false);
  rsa.Float("top_p", &r.top_p, 0.0, 1.0, true);
  rsa.Integer("max_population", &r.max_population, 1, 4096);
  rsa.Integer("max_rounds", &r.max_rounds, 0, 1024);
  rsa.Integer("max_tail", &r.max_tail, 1, 1 << 24);
  rsa.Integer("max_budget", &r.max_budget, 1, 1 << 24);
  rsa.Enum("answer_extractor", &r.answer_extractor,
           {"boxed", "answer_tag", "last_number", "regex"});
  rsa.String("answer_regex", &r.answer_regex, true, kMaxRegexBytes);
  rsa.String("aggregation_template", &r.aggregation_template, true);

  Section ipc(problems, "ipc", tables[5]);
  IpcConfig& c = config.ipc;
  ipc.String("endpoint", &c.endpoint, false, 1024);
  ipc.Size("max_message", &c.max_message, kKiB, 256 * kMiB);
  ipc.Integer("max_json_depth", &c.max_json_depth, 1, 1024);
  ipc.Integer("max_requests_per_client", &c.max_requests_per_client, 1, 100000);
  ipc.Duration("heartbeat_interval", &c.heartbeat_interval, milliseconds(100),
               std::chrono::hours(1));
  ipc.Duration("heartbeat_timeout", &c.heartbeat_timeout, milliseconds(100), std::chrono::hours(1));
  ipc.Integer("send_hwm", &c.send_hwm, 1, 10000000);

  Section log(problems, "log", tables[6]);
  log.Enum("level", &config.log.level, {"err", "warning", "notice", "info", "debug"});
  log.Enum("target", &config.log.target, {"auto", "journal", "stderr"});

  if (known_out != nullptr) {
    for (const Section* s : {&model, &backend, &memory, &scheduler, &rsa, &ipc, &log}) {
      known_out->push_back({s->name(), s->known()});
    }
    return;
  }
  for (Section* s : {&model, &backend, &memory, &scheduler, &rsa, &ipc, &log}) s->Finish(all_keys);

  // Relations between keys. Each is checked only when both keys were read without error, and is
  // reported at the line of a key that the file sets.
  auto relation = [&](Section& sa, std::string_view a, const std::string& a_value, Section& sb,
                      std::string_view b, const std::string& b_value,
                      std::string_view relation_text, std::string_view advice) {
    if (sa.Failed(a) || sb.Failed(b)) return;
    const size_t line = sa.Has(a) ? sa.Line(a) : sb.Has(b) ? sb.Line(b) : sa.Line(a);
    std::string text = "[" + std::string(sa.name()) + "] " + std::string(a) + " = " + a_value +
                       (sa.Has(a) ? "" : " (the default)") + " " + std::string(relation_text) +
                       " " + std::string(sb.name()) + "." + std::string(b) + " (" + b_value +
                       (sb.Has(b) ? "" : ", the default") + "); " + std::string(advice);
    problems.Add(line, std::move(text));
  };
  const auto i2s = [](int64_t x) { return std::to_string(x); };

  const MemoryConfig& m = config.memory;
  // The key is accepted so that files written for a later zayad that pages experts still load with
  // false, but true would promise a memory saving that nothing delivers.
  if (m.experts_offload) {
    problems.Add(memory.Line("experts_offload"),
                 "[memory] experts_offload = true is not implemented: every expert stays resident; "
                 "set it to false, and if the weights do not fit in memory.weights raise "
                 "memory.weights or set model.weights_dtype = \"int8\"");
  }
  if (m.request > m.state) {
    relation(memory, "request", Quote(FormatSize(m.request)), memory, "state", FormatSize(m.state),
             "is larger than",
             "one request must fit in the state pool: lower request or raise state");
  }
  const SchedulerConfig& s = config.scheduler;
  if (s.prefill_chunk > s.max_step_tokens) {
    relation(scheduler, "prefill_chunk", i2s(s.prefill_chunk), scheduler, "max_step_tokens",
             i2s(s.max_step_tokens), "is larger than",
             "a step must hold at least one prefill chunk: lower prefill_chunk or raise "
             "max_step_tokens");
  }
  if (s.max_running_sequences > s.max_step_tokens) {
    relation(scheduler, "max_running_sequences", i2s(s.max_running_sequences), scheduler,
             "max_step_tokens", i2s(s.max_step_tokens), "is larger than",
             "every running sequence decodes one token per step: lower max_running_sequences or "
             "raise max_step_tokens");
  }
  struct Limit {
    std::string_view key;
    int value;
    std::string_view max_key;
    int max_value;
  };
  for (const Limit& l : {Limit{"population", r.population, "max_population", r.max_population},
                         Limit{"rounds", r.rounds, "max_rounds", r.max_rounds},
                         Limit{"tail", r.tail, "max_tail", r.max_tail},
                         Limit{"budget", r.budget, "max_budget", r.max_budget}}) {
    if (l.value > l.max_value) {
      relation(rsa, l.key, i2s(l.value), rsa, l.max_key, i2s(l.max_value), "is above its limit",
               "defaults must be within the limits: lower " + std::string(l.key) + " or raise " +
                   std::string(l.max_key));
    }
  }
  if (r.subset > r.population) {
    relation(rsa, "subset", i2s(r.subset), rsa, "population", i2s(r.population), "is larger than",
             "each aggregation draws subset candidates from the population: lower subset or "
             "raise population");
  }
  if (r.tail > r.budget) {
    relation(rsa, "tail", i2s(r.tail), rsa, "budget", i2s(r.budget), "is larger than",
             "the tail is cut from a trace of at most budget tokens: lower tail or raise budget");
  }
  const int64_t context = config.model.max_context;
  int64_t aggregation = 0;
  const RsaMisfit misfit =
      context > 0 ? RsaContextMisfit(r, context, &aggregation) : RsaMisfit::kNone;
  if (misfit == RsaMisfit::kBudget) {
    relation(rsa, "budget", i2s(r.budget), model, "max_context", i2s(context), "does not fit in",
             "a trace needs the question plus budget tokens: lower budget or "
             "raise max_context");
  } else if (misfit == RsaMisfit::kAggregation) {
    relation(rsa, "subset",
             i2s(r.subset) + " (with tail " + i2s(r.tail) + " and budget " + i2s(r.budget) + ": " +
                 i2s(aggregation) + " tokens)",
             model, "max_context", i2s(context), "does not fit in",
             "an aggregation prompt holds subset * tail tokens plus budget generated tokens: "
             "lower subset, tail or budget");
  }
  if (!rsa.Failed("answer_extractor") && !rsa.Failed("answer_regex")) {
    if (r.answer_extractor == "regex" && r.answer_regex.empty()) {
      problems.Add(rsa.Line("answer_extractor"),
                   "[rsa] answer_extractor = \"regex\" needs answer_regex: set answer_regex to a "
                   "regular expression whose group 1 is the answer, e.g. \"Answer: (\\\\S+)\"");
    } else if (!r.answer_regex.empty()) {
      std::string problem;
      try {
        const std::regex re(r.answer_regex, std::regex::ECMAScript);
        if (re.mark_count() < 1) problem = "has no capture group; group 1 must capture the answer";
      } catch (const std::regex_error& e) {
        problem = std::string("is not a valid regular expression (") + e.what() +
                  "); use ECMAScript syntax with group 1 capturing the answer";
      }
      if (!problem.empty()) {
        problems.Add(rsa.Line("answer_regex"),
                     "[rsa] answer_regex = " + Quote(r.answer_regex) + " " + problem);
      }
    }
  }
  // The same parser the engine renders from: a typo such as {txet} would otherwise pass here and
  // on reload, then fail every solve as if the client had sent something wrong.
  if (!rsa.Failed("aggregation_template") && !r.aggregation_template.empty()) {
    if (auto parsed = ParseAggregationTemplate(r.aggregation_template); !parsed.ok()) {
      problems.Add(rsa.Line("aggregation_template"),
                   "[rsa] aggregation_template = " + Quote(r.aggregation_template) +
                       " is invalid: " + parsed.status().message());
    }
  }
  if (!ipc.Failed("endpoint")) {
    const std::string& e = c.endpoint;
    const auto fail_endpoint = [&](const std::string& why) {
      problems.Add(ipc.Line("endpoint"), "[ipc] endpoint = " + Quote(e) + " " + why);
    };
    if (e.rfind("ipc://", 0) == 0) {
      const std::string path = e.substr(6);
      if (path.empty() || path.size() > 107) {
        fail_endpoint("needs a socket path of 1 to 107 bytes after ipc:// (the AF_UNIX limit)");
      } else if (path.front() != '/' && path.front() != '@') {
        fail_endpoint(
            "has a relative socket path; use an absolute one such as "
            "\"ipc:///run/zayad/zayad.sock\"");
      }
    } else if (e.rfind("tcp://", 0) == 0) {
      // Checked here because a bad one otherwise shows only when zmq_bind fails, after the model
      // has loaded (minutes for a large one).
      const std::string example =
          "e.g. \"tcp://127.0.0.1:5555\" (host \"*\" binds every interface)";
      const size_t colon = e.rfind(':');
      const std::string host = colon > 6 ? e.substr(6, colon - 6) : "";
      const std::string port = colon > 6 ? e.substr(colon + 1) : "";
      const bool port_digits =
          !port.empty() && port.size() <= 5 &&
          std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
      const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
      if (colon == std::string::npos || colon < 6) {
        fail_endpoint("needs a host and port, " + example);
      } else if (host.empty()) {
        fail_endpoint("has no host before the port; " + example);
      } else if (host.find_first_of(" \t/") != std::string::npos) {
        fail_endpoint("has host " + Quote(host) + ", which is not a host name or address; " +
                      example);
      } else if (host.find(':') != std::string::npos && !bracketed) {
        fail_endpoint("has an IPv6 address without brackets; write it as tcp://[" + host +
                      "]:" + port);
      } else if (!port_digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
        fail_endpoint("has port " + Quote(port) +
                      ", which is not a number from 1 to 65535 (clients need a fixed port, so "
                      "\"*\" is refused too); " +
                      example);
      }
    } else {
      fail_endpoint("must start with ipc:// (a local socket, the default) or tcp://");
    }
  }
  if (c.heartbeat_timeout <= c.heartbeat_interval) {
    relation(ipc, "heartbeat_timeout", Quote(FormatDuration(c.heartbeat_timeout)), ipc,
             "heartbeat_interval", FormatDuration(c.heartbeat_interval), "is not longer than",
             "a client must get longer than one heartbeat interval to answer: make "
             "heartbeat_timeout longer than heartbeat_interval (the defaults are 5s and 15s)");
  }
}

KeyList AllKeys() {
  Problems ignored("");
  const toml::value* none[7] = {};
  Config scratch;
  KeyList keys;
  ReadSections(ignored, none, scratch, {}, &keys);
  return keys;
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  auto r = ParseSizeReason(text);
  if (!r.ok()) return InvalidArgument("size " + Quote(text) + " " + r.status().message());
  return r;
}

Status CheckRsaFitsContext(const RsaConfig& r, int64_t context, std::string_view origin) {
  int64_t aggregation = 0;
  const std::string in_context = " does not fit in the model's context of " +
                                 std::to_string(context) + " tokens (" + std::string(origin) + ")";
  switch (RsaContextMisfit(r, context, &aggregation)) {
    case RsaMisfit::kNone:
      return Status::Ok();
    case RsaMisfit::kBudget:
      return InvalidArgument(
          "rsa.budget = " + std::to_string(r.budget) + in_context +
          ": a trace needs the question plus budget tokens, so every solve using the default "
          "would be refused; lower rsa.budget below " +
          std::to_string(context) + " (and rsa.tail with it: subset * tail + budget must fit too)");
    case RsaMisfit::kAggregation:
      return InvalidArgument(
          "rsa.subset * rsa.tail + rsa.budget = " + std::to_string(r.subset) + " * " +
          std::to_string(r.tail) + " + " + std::to_string(r.budget) + " = " +
          std::to_string(aggregation) + " tokens" + in_context +
          ": an aggregation prompt holds subset tails plus budget generated tokens, so every "
          "solve using the defaults would be refused; lower rsa.tail, rsa.subset or rsa.budget");
  }
  return Status::Ok();
}

Result<milliseconds> ParseDuration(std::string_view text) {
  auto r = ParseDurationReason(text);
  if (!r.ok()) return InvalidArgument("duration " + Quote(text) + " " + r.status().message());
  return r;
}

std::string FormatSize(uint64_t bytes) {
  if (bytes == 0) return "0B";
  static constexpr std::pair<uint64_t, std::string_view> kUnits[] = {
      {kTiB, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}};
  for (const auto& [unit, name] : kUnits) {
    if (bytes % unit == 0) return std::to_string(bytes / unit) + std::string(name);
  }
  return std::to_string(bytes) + "B";
}

std::string FormatDuration(milliseconds d) {
  const int64_t ms = d.count();
  if (ms == 0) return "0s";
  if (ms < 0) return std::to_string(ms) + "ms";
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

Result<Config> ParseConfig(std::string_view toml_text, const std::string& name) {
  Problems problems(name);
  if (toml_text.size() > kMaxConfigBytes) {
    problems.Add(1, "the file is " + std::to_string(toml_text.size()) + " bytes; at most " +
                        std::to_string(kMaxConfigBytes) + " are allowed");
    return problems.ToStatus();
  }
  if (const size_t bad = FirstInvalidUtf8(toml_text); bad != std::string_view::npos) {
    const std::string_view before = toml_text.substr(0, bad);
    const size_t line = 1 + static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
    const size_t line_start = before.rfind('\n');
    const size_t column = bad - (line_start == std::string_view::npos ? 0 : line_start + 1) + 1;
    char byte[8];
    std::snprintf(byte, sizeof(byte), "0x%02x", static_cast<unsigned char>(toml_text[bad]));
    problems.Add(line, "the file is not valid UTF-8 (byte " + std::string(byte) + " at column " +
                           std::to_string(column) + "); TOML files must be UTF-8 text");
    return problems.ToStatus();
  }
  ZAYA_RETURN_IF_ERROR(CheckShape(toml_text, problems));

  toml::value root;
  try {
    std::istringstream in{std::string(toml_text)};
    root = toml::parse(in, name);
  } catch (const toml::exception& e) {
    const toml::source_location& loc = e.location();
    std::string text = "TOML syntax error: " + SyntaxSummary(e.what());
    if (!loc.line_str().empty()) text += " (line: " + Quote(loc.line_str()) + ")";
    text += "; see https://toml.io for the syntax";
    problems.Add(loc.line(), std::move(text));
    return problems.ToStatus();
  } catch (const std::exception& e) {
    problems.Add(1, std::string("cannot parse the file as TOML: ") + e.what());
    return problems.ToStatus();
  }

  Config config;
  config.source = name;
  try {
    static const KeyList kAllKeys = AllKeys();
    const toml::value* tables[7] = {};
    if (root.is_table()) {
      for (const auto& [key, value] : root.as_table()) {
        const auto* it = std::find(std::begin(kSections), std::end(kSections), key);
        if (it == std::end(kSections)) {
          std::string text;
          std::string_view owner;
          for (const auto& [section, keys] : kAllKeys) {
            if (std::find(keys.begin(), keys.end(), key) != keys.end()) owner = section;
          }
          if (!value.is_table() && !owner.empty()) {
            text = "key " + Quote(key) + " is outside any section; move it under [" +
                   std::string(owner) + "]";
          } else {
            text = (value.is_table() ? "unknown section [" : "unknown key outside any section [") +
                   key + "]";
            const std::vector<std::string_view> sections(std::begin(kSections),
                                                         std::end(kSections));
            const std::string_view guess = Closest(key, sections);
            if (!guess.empty()) {
              text += "; did you mean [" + std::string(guess) + "]?";
            } else {
              text += "; sections are [model] [backend] [memory] [scheduler] [rsa] [ipc] [log]";
            }
          }
          problems.Add(value.location().line(), std::move(text));
          continue;
        }
        if (!value.is_table()) {
          problems.Add(value.location().line(), key + " = " + Render(value) +
                                                    " must be a section: write [" + key +
                                                    "] and put its keys below it");
          continue;
        }
        tables[it - std::begin(kSections)] = &value;
      }
    }
    ReadSections(problems, tables, config, kAllKeys, nullptr);
  } catch (const std::exception& e) {
    // toml11 accessors throw only on a type mismatch the readers already check; keep a bug here
    // from escaping as an exception.
    problems.Add(1, std::string("internal error while validating: ") + e.what());
  }
  if (!problems.empty()) return problems.ToStatus();

  config.model.path = ResolvePath(config.model.path, name);
  config.backend.plugin_dir = ResolvePath(config.backend.plugin_dir, name);
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec);
  if (ec) absolute = path;
  const std::string name = absolute.lexically_normal().string();
  if (fs::is_directory(absolute, ec)) {
    return InvalidArgument("config " + name + " is a directory; pass the TOML file itself");
  }
  std::ifstream in(absolute, std::ios::binary);
  if (!in) {
    return NotFound("cannot open config file " + name + ": " + std::strerror(errno) +
                    "; pass --config PATH or install one (docs/configuration.md)");
  }
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) {
      return InvalidArgument("config " + name + " is larger than " +
                             std::to_string(kMaxConfigBytes) + " bytes; is it the right file?");
    }
  }
  if (in.bad()) return DataLoss("cannot read config file " + name);
  return ParseConfig(text, name);
}

std::string FormatConfig(const Config& c) {
  std::ostringstream o;
  const auto str = [](const std::string& s) { return TomlString(s); };
  if (!c.source.empty()) o << "# Effective configuration read from " << c.source << "\n";
  o << "[model]\n"
    << "path = " << str(c.model.path) << "\n"
    << "weights_dtype = " << str(c.model.weights_dtype) << "\n"
    << "kv_dtype = " << str(c.model.kv_dtype) << "\n"
    << "max_context = " << c.model.max_context << "\n\n"
    << "[backend]\n"
    << "kind = " << str(c.backend.kind) << "\n"
    << "plugin_dir = " << str(c.backend.plugin_dir) << "\n"
    << "threads = " << c.backend.threads << "\n"
    << "device = " << c.backend.device << "\n\n"
    << "[memory]\n"
    << "weights = " << str(FormatSize(c.memory.weights)) << "\n"
    << "state = " << str(FormatSize(c.memory.state)) << "\n"
    << "request = " << str(FormatSize(c.memory.request)) << "\n"
    << "kv_block_tokens = " << c.memory.kv_block_tokens << "\n"
    << "experts_offload = " << (c.memory.experts_offload ? "true" : "false") << "\n\n"
    << "[scheduler]\n"
    << "max_queue = " << c.scheduler.max_queue << "\n"
    << "max_running_sequences = " << c.scheduler.max_running_sequences << "\n"
    << "prefill_chunk = " << c.scheduler.prefill_chunk << "\n"
    << "max_step_tokens = " << c.scheduler.max_step_tokens << "\n"
    << "drain_timeout = " << str(FormatDuration(c.scheduler.drain_timeout)) << "\n\n"
    << "[rsa]\n"
    << "mode = " << str(c.rsa.mode) << "\n"
    << "population = " << c.rsa.population << "\n"
    << "subset = " << c.rsa.subset << "\n"
    << "rounds = " << c.rsa.rounds << "\n"
    << "tail = " << c.rsa.tail << "\n"
    << "budget = " << c.rsa.budget << "\n"
    << "temperature = " << FormatDouble(c.rsa.temperature) << "\n"
    << "top_p = " << FormatDouble(c.rsa.top_p) << "\n"
    << "max_population = " << c.rsa.max_population << "\n"
    << "max_rounds = " << c.rsa.max_rounds << "\n"
    << "max_tail = " << c.rsa.max_tail << "\n"
    << "max_budget = " << c.rsa.max_budget << "\n"
    << "answer_extractor = " << str(c.rsa.answer_extractor) << "\n"
    << "answer_regex = " << str(c.rsa.answer_regex) << "\n"
    << "aggregation_template = " << str(c.rsa.aggregation_template) << "\n\n"
    << "[ipc]\n"
    << "endpoint = " << str(c.ipc.endpoint) << "\n"
    << "max_message = " << str(FormatSize(c.ipc.max_message)) << "\n"
    << "max_json_depth = " << c.ipc.max_json_depth << "\n"
    << "max_requests_per_client = " << c.ipc.max_requests_per_client << "\n"
    << "heartbeat_interval = " << str(FormatDuration(c.ipc.heartbeat_interval)) << "\n"
    << "heartbeat_timeout = " << str(FormatDuration(c.ipc.heartbeat_timeout)) << "\n"
    << "send_hwm = " << c.ipc.send_hwm << "\n\n"
    << "[log]\n"
    << "level = " << str(c.log.level) << "\n"
    << "target = " << str(c.log.target) << "\n";
  return o.str();
}

std::vector<std::string> KeysNeedingRestart(const Config& a, const Config& b) {
  std::vector<std::string> keys;
  const auto check = [&keys](bool differs, const char* key) {
    if (differs) keys.emplace_back(key);
  };
  check(a.model.path != b.model.path, "model.path");
  check(a.model.weights_dtype != b.model.weights_dtype, "model.weights_dtype");
  check(a.model.kv_dtype != b.model.kv_dtype, "model.kv_dtype");
  check(a.model.max_context != b.model.max_context, "model.max_context");
  check(a.backend.kind != b.backend.kind, "backend.kind");
  check(a.backend.plugin_dir != b.backend.plugin_dir, "backend.plugin_dir");
  check(a.backend.threads != b.backend.threads, "backend.threads");
  check(a.backend.device != b.backend.device, "backend.device");
  check(a.memory.weights != b.memory.weights, "memory.weights");
  check(a.memory.state != b.memory.state, "memory.state");
  check(a.memory.request != b.memory.request, "memory.request");
  check(a.memory.kv_block_tokens != b.memory.kv_block_tokens, "memory.kv_block_tokens");
  check(a.memory.experts_offload != b.memory.experts_offload, "memory.experts_offload");
  check(a.scheduler.max_running_sequences != b.scheduler.max_running_sequences,
        "scheduler.max_running_sequences");
  check(a.scheduler.prefill_chunk != b.scheduler.prefill_chunk, "scheduler.prefill_chunk");
  check(a.scheduler.max_step_tokens != b.scheduler.max_step_tokens, "scheduler.max_step_tokens");
  check(a.scheduler.drain_timeout != b.scheduler.drain_timeout, "scheduler.drain_timeout");
  check(a.ipc.endpoint != b.ipc.endpoint, "ipc.endpoint");
  check(a.ipc.heartbeat_interval != b.ipc.heartbeat_interval, "ipc.heartbeat_interval");
  check(a.ipc.heartbeat_timeout != b.ipc.heartbeat_timeout, "ipc.heartbeat_timeout");
  check(a.ipc.send_hwm != b.ipc.send_hwm, "ipc.send_hwm");
  check(a.log.target != b.log.target, "log.target");
  return keys;
}

}  // namespace zaya
