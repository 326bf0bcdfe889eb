#include "base/log.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace zaya::log {
namespace {

struct Captured {
  std::vector<std::pair<Priority, std::string>> records;
};

void Capture(Priority p, std::string_view m, void* user) {
  static_cast<Captured*>(user)->records.emplace_back(p, std::string(m));
}

TEST(LogTest, LevelFiltersRecords) {
  Captured c;
  SetCaptureForTesting(&Capture, &c);
  Configure(Priority::kNotice, Sink::kStderr);
  ZAYA_LOG(kDebug, "hidden");
  ZAYA_LOG(kInfo, "hidden too");
  ZAYA_LOG(kWarning, "shown", {"REQUEST_ID", "r1"});
  SetCaptureForTesting(nullptr, nullptr);
  Configure(Priority::kInfo, Sink::kStderr);
  ASSERT_EQ(c.records.size(), 1u);
  EXPECT_EQ(c.records[0].first, Priority::kWarning);
  EXPECT_EQ(c.records[0].second, "shown");
}

TEST(LogTest, ParsePriority) {
  Priority p{};
  EXPECT_TRUE(ParsePriority("debug", &p));
  EXPECT_EQ(p, Priority::kDebug);
  EXPECT_FALSE(ParsePriority("loud", &p));
}

TEST(LogTest, StderrLinesCarryPriorityPrefix) {
  Configure(Priority::kInfo, Sink::kStderr);
  testing::internal::CaptureStderr();
  ZAYA_LOG(kErr, "disk on fire", {"CLIENT", "c7"});
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "<3>disk on fire client=c7\n");
}

}  // namespace
}  // namespace zaya::log
