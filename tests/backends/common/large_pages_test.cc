#include "backends/common/large_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace zaya::backend_common {
namespace {

// The VmFlags line of the mapping that holds `p` in /proc/self/smaps, or "" if none does.
std::string VmFlagsOf(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= at && at < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

// "hg" in VmFlags is MADV_HUGEPAGE (proc(5)): the advice, which the kernel keeps whether or not
// it then finds free huge pages, so this holds on any Linux with transparent huge pages.
bool AdvisedHuge(const void* p) { return VmFlagsOf(p).find(" hg") != std::string::npos; }

TEST(LargePages, LargeBuffersAreAlignedZeroedAndAdvisedForHugePages) {
  for (const size_t bytes :
       {kLargePageBytes, kLargePageBytes + 1, 3 * kLargePageBytes + 4095, size_t{64} << 20}) {
    void* p = AllocateStreamed(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kLargePageBytes, 0u) << bytes;
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < bytes; i += 4093) ASSERT_EQ(b[i], 0) << bytes << " at " << i;
    EXPECT_EQ(b[bytes - 1], 0) << bytes;
    std::memset(p, 0xab, bytes);  // all of it is writable
    if (std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good()) {
      EXPECT_TRUE(AdvisedHuge(p)) << bytes << " bytes: " << VmFlagsOf(p);
      EXPECT_TRUE(AdvisedHuge(b + bytes - 1)) << bytes << " bytes, last byte";
    }
    FreeStreamed(p, bytes);
  }
}

// This process's mapped bytes (VmSize in /proc/self/status).
size_t MappedBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  }
  return 0;
}

// The head and tail trimmed off the over-sized mapping must go back: a buffer maps its bytes
// rounded to 4 KiB, not 2 MiB more, and unmaps them all when freed.
TEST(LargePages, AMappingIsTheBufferRoundedToAPageAndFreedWhole) {
  const size_t bytes = 5 * kLargePageBytes + 100, len = StreamedBytes(bytes);
  EXPECT_EQ(len, (bytes + 4095) / 4096 * 4096);
  const size_t before = MappedBytes();
  ASSERT_GT(before, 0u);
  void* p = AllocateStreamed(bytes);
  ASSERT_NE(p, nullptr);
  const size_t during = MappedBytes();
  FreeStreamed(p, bytes);
  const size_t after = MappedBytes();
  // The heap may grow by a little between the reads (reading the file allocates), never by the
  // 2 MiB that an untrimmed mapping would keep.
  EXPECT_GE(during, before + len);
  EXPECT_LT(during, before + len + kLargePageBytes / 2);
  EXPECT_LT(after, before + kLargePageBytes / 2);
}

TEST(LargePages, SmallBuffersComeFromTheHeapCacheLineAligned) {
  for (const size_t bytes :
       {size_t{1}, size_t{63}, size_t{64}, size_t{4097}, kLargePageBytes - 1}) {
    void* p = AllocateStreamed(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes;
    std::memset(p, 1, StreamedBytes(bytes));
    FreeStreamed(p, bytes);
  }
  FreeStreamed(nullptr, 10);  // a no-op, like free(nullptr)
}

TEST(LargePages, AnAddressSpaceSizedRequestFailsWithNull) {
  EXPECT_EQ(AllocateStreamed(SIZE_MAX - 10), nullptr);
  EXPECT_EQ(AllocateStreamed(size_t{1} << 62), nullptr);
}

TEST(LargePages, TheAllocatorServesVectorsOfEitherSize) {
  std::vector<uint64_t, StreamedAllocator<uint64_t>> big(kLargePageBytes / 8 * 3, 7);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.data()) % kLargePageBytes, 0u);
  EXPECT_EQ(big.back(), 7u);
  std::vector<float, StreamedAllocator<float>> small(10, 1.5f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data()) % 64, 0u);
  big.resize(big.size() * 2, 9);  // grows through allocate/deallocate pairs of different sizes
  EXPECT_EQ(big.front(), 7u);
  EXPECT_EQ(big.back(), 9u);
  StreamedAllocator<uint64_t> a;
  EXPECT_THROW((void)a.allocate(SIZE_MAX / 4), std::bad_array_new_length);
}

// The start-up note: silent where the advice gets huge pages, else the mode and the command.
TEST(LargePages, TheHugePageModeIsReportedOnlyWhereItKeepsHugePagesAway) {
  EXPECT_EQ(HugePagesUnavailable("always [madvise] never"), "");
  EXPECT_EQ(HugePagesUnavailable("[always] madvise never\n"), "");
  const std::string never = HugePagesUnavailable("always madvise [never]");
  EXPECT_NE(never.find("'never'"), std::string::npos) << never;
  EXPECT_NE(never.find("echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"),
            std::string::npos)
      << never;
  EXPECT_NE(HugePagesUnavailable(nullptr).find("no transparent huge pages"), std::string::npos);
  // A file in a format this code does not know is quoted whole rather than taken for a mode.
  EXPECT_NE(HugePagesUnavailable("garbled").find("'garbled'"), std::string::npos);
}

}  // namespace
}  // namespace zaya::backend_common
