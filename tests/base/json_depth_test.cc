#include "base/json_depth.h"

#include <gtest/gtest.h>

#include <string>

namespace zaya {
namespace {

TEST(JsonNestingDepthTest, CountsArraysAndObjectsOutsideStrings) {
  EXPECT_EQ(JsonNestingDepth("1", 8), 0);
  EXPECT_EQ(JsonNestingDepth("{}", 8), 1);
  EXPECT_EQ(JsonNestingDepth(R"({"a":[1,{"b":[]}],"c":{}})", 8), 4);
  // Brackets inside strings, escaped quotes included, do not count.
  EXPECT_EQ(JsonNestingDepth(R"({"a":"[[[{{{","b":"\"[[[\\"})", 8), 1);
  EXPECT_EQ(JsonNestingDepth(R"(["\\",[]])", 8), 2);
}

TEST(JsonNestingDepthTest, StopsJustPastTheLimit) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(JsonNestingDepth(deep, 64), 65);
  EXPECT_EQ(JsonNestingDepth(std::string(64, '[') + std::string(64, ']'), 64), 64);
  EXPECT_EQ(JsonNestingDepth(std::string(1'000'000, '['), 32), 33);  // never closed
  EXPECT_EQ(JsonNestingDepth("]]]][[[[", 8), 4);  // stray closers do not hide what follows
}

}  // namespace
}  // namespace zaya
