// Logging facade. One call site format for the whole daemon; the sink is chosen once:
//  - journald (sd_journal_send with PRIORITY, MESSAGE, CODE_FILE/LINE/FUNC and any extra fields)
//  when
//    stderr is connected to the journal (systemd sets JOURNAL_STREAM to stderr's device:inode);
//  - otherwise stderr, one line per record, prefixed with "<N>" (sd-daemon(3) priority prefixes) so
//    that a supervisor reading stderr still sees priorities.
// Library code does not log errors it returns; callers do (systemd CODING_STYLE).
//
// Thread safety: all functions may be called from any thread; records are written whole.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace zaya::log {

// syslog priorities, numerically equal to LOG_ERR..LOG_DEBUG.
enum class Priority : int {
  kErr = 3,
  kWarning = 4,
  kNotice = 5,
  kInfo = 6,
  kDebug = 7,
};

enum class Sink { kAuto, kJournal, kStderr };

// A structured journal field, e.g. {"REQUEST_ID", "abc"}. Keys must be uppercase journal field
// names.
using Field = std::pair<std::string_view, std::string>;

// Records below `level` are dropped. kAuto picks the journal when JOURNAL_STREAM matches stderr.
void Configure(Priority level, Sink sink);
Priority Level();
bool Enabled(Priority p);

// Parses "err", "warning", "notice", "info", "debug"; returns false on anything else.
bool ParsePriority(std::string_view text, Priority* out);
std::string_view PriorityName(Priority p);

void Write(Priority p, std::string_view message, std::initializer_list<Field> fields = {},
           const char* file = nullptr, int line = 0, const char* func = nullptr);

// For tests: capture records instead of writing them. Pass nullptr to stop.
using CaptureFn = void (*)(Priority, std::string_view message, void* user);
void SetCaptureForTesting(CaptureFn fn, void* user);

}  // namespace zaya::log

#define ZAYA_LOG(prio, msg, ...)                                                                \
  do {                                                                                          \
    if (::zaya::log::Enabled(::zaya::log::Priority::prio))                                      \
      ::zaya::log::Write(::zaya::log::Priority::prio, (msg), {__VA_ARGS__}, __FILE__, __LINE__, \
                         __func__);                                                             \
  } while (0)
