#include "base/log.h"

#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace zaya::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Priority::kInfo)};
std::atomic<bool> g_journal{false};
std::mutex g_mu;
CaptureFn g_capture = nullptr;
void* g_capture_user = nullptr;

bool StderrIsJournal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

}  // namespace

void Configure(Priority level, Sink sink) {
  g_level.store(static_cast<int>(level));
  switch (sink) {
    case Sink::kAuto:
      g_journal.store(StderrIsJournal());
      break;
    case Sink::kJournal:
      g_journal.store(true);
      break;
    case Sink::kStderr:
      g_journal.store(false);
      break;
  }
}

Priority Level() { return static_cast<Priority>(g_level.load()); }
bool Enabled(Priority p) { return static_cast<int>(p) <= g_level.load(); }

bool ParsePriority(std::string_view text, Priority* out) {
  static constexpr std::pair<std::string_view, Priority> kNames[] = {
      {"err", Priority::kErr},       {"error", Priority::kErr}, {"warning", Priority::kWarning},
      {"notice", Priority::kNotice}, {"info", Priority::kInfo}, {"debug", Priority::kDebug}};
  for (const auto& [name, p] : kNames) {
    if (text == name) {
      *out = p;
      return true;
    }
  }
  return false;
}

std::string_view PriorityName(Priority p) {
  switch (p) {
    case Priority::kErr:
      return "err";
    case Priority::kWarning:
      return "warning";
    case Priority::kNotice:
      return "notice";
    case Priority::kInfo:
      return "info";
    case Priority::kDebug:
      return "debug";
  }
  return "info";
}

void SetCaptureForTesting(CaptureFn fn, void* user) {
  std::lock_guard lock(g_mu);
  g_capture = fn;
  g_capture_user = user;
}

void Write(Priority p, std::string_view message, std::initializer_list<Field> fields,
           const char* file, int line, const char* func) {
  {
    std::lock_guard lock(g_mu);
    if (g_capture != nullptr) {
      g_capture(p, message, g_capture_user);
      return;
    }
  }
  if (g_journal.load()) {
    // sd_journal_sendv takes "KEY=value" iovecs; build them all so the record is one datagram.
    std::vector<std::string> items;
    items.reserve(fields.size() + 5);
    items.push_back("MESSAGE=" + std::string(message));
    items.push_back("PRIORITY=" + std::to_string(static_cast<int>(p)));
    items.push_back("SYSLOG_IDENTIFIER=zayad");
    if (file != nullptr) {
      items.push_back(std::string("CODE_FILE=") + file);
      items.push_back("CODE_LINE=" + std::to_string(line));
    }
    if (func != nullptr) items.push_back(std::string("CODE_FUNC=") + func);
    for (const auto& [k, v] : fields) items.push_back(std::string(k) + "=" + v);
    std::vector<iovec> iov(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      iov[i].iov_base = items[i].data();
      iov[i].iov_len = items[i].size();
    }
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
    // Fall through to stderr if the journal socket is gone.
  }
  std::string out = "<" + std::to_string(static_cast<int>(p)) + ">";
  out.append(message);
  for (const auto& [k, v] : fields) {
    out += ' ';
    for (char c : k) out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    out += '=';
    out += v;
  }
  out += '\n';
  std::lock_guard lock(g_mu);
  std::fwrite(out.data(), 1, out.size(), stderr);
  std::fflush(stderr);
}

}  // namespace zaya::log
