#include "engine/weights/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "tests/engine/weights/test_util.h"

namespace zaya {
namespace {

using testing::FakeTensor;
using testing::MakeSafetensors;
using testing::SafetensorsBytes;
using testing::TempDir;
using testing::WriteBytes;

std::string Data(size_t n) { return std::string(n, '\x01'); }

TEST(SafetensorsTest, OpensValidFileWithMetadataAndReadsValues) {
  TempDir dir;
  const std::string path = dir.File("model.safetensors");
  std::string data(24, '\0');
  const float values[4] = {1.5f, -2.0f, 0.25f, 3.0f};
  std::memcpy(data.data(), values, 16);
  data[16] = static_cast<char>(0x80);  // bf16 bits 0x3f80 = 1.0 at [16, 18)
  data[17] = 0x3f;
  WriteBytes(path,
             SafetensorsBytes(R"({"__metadata__":{"format":"pt"},)"
                              R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                              R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[16,18]},)"
                              R"("empty":{"dtype":"F16","shape":[0,4],"data_offsets":[18,18]},)"
                              R"("h":{"dtype":"F16","shape":[2],"data_offsets":[20,24]}})",
                              data));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  ASSERT_EQ((*file)->tensors().size(), 4u);
  const TensorView* w = (*file)->Find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::kF32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(w->nbytes, 16u);
  float out[4];
  ConvertToF32(w->dtype, w->data, 4, out);
  EXPECT_EQ(out[1], -2.0f);
  const TensorView* b = (*file)->Find("b");
  ASSERT_NE(b, nullptr);
  ConvertToF32(b->dtype, b->data, 1, out);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ((*file)->Find("empty")->numel(), 0);
  EXPECT_EQ((*file)->Find("missing"), nullptr);
}

TEST(SafetensorsTest, DTypeConversions) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(F16ToF32(0x7c00)));
  EXPECT_TRUE(std::isnan(F16ToF32(0x7e00)));
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly half-way between two bf16 values: round to even (1.0).
  EXPECT_EQ(F32ToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(F32ToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(Bf16ToF32(0xc040), -3.0f);
  EXPECT_FALSE(ParseDType("I8").has_value());
  EXPECT_EQ(DTypeSize(*ParseDType("BF16")), 2u);
}

struct CorruptCase {
  const char* label;
  std::string bytes;
  StatusCode code;
  std::vector<std::string> needles;  // substrings the message must contain (besides the path)
};

std::vector<CorruptCase> CorruptCases() {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})";
  std::string huge_len(8, '\0');
  huge_len[5] = 0x01;  // 2^40
  std::string past_end(8, '\0');
  past_end[0] = 100;
  std::string valid = SafetensorsBytes("{" + ok_entry + "}", Data(16));
  std::string deep = std::string(64, '[') + std::string(64, ']');
  return {
      {"empty file", "", StatusCode::kDataLoss, {"shorter than the 8-byte header length"}},
      {"five bytes", "\x01\x02\x03\x04\x05", StatusCode::kDataLoss, {"shorter than the 8-byte"}},
      {"header length huge", huge_len + "{}", StatusCode::kDataLoss, {"exceeds the 100 MiB limit"}},
      {"header length past end",
       past_end + "{}",
       StatusCode::kDataLoss,
       {"header length 100 runs past the end"}},
      {"not json", SafetensorsBytes("{abc", ""), StatusCode::kDataLoss, {"not valid JSON"}},
      {"trailing garbage", SafetensorsBytes("{}x", ""), StatusCode::kDataLoss, {"not valid JSON"}},
      {"invalid utf8",
       SafetensorsBytes("{\"a\xff\":1}", ""),
       StatusCode::kDataLoss,
       {"not valid JSON"}},
      {"json array", SafetensorsBytes("[]", ""), StatusCode::kDataLoss, {"not an object"}},
      {"nested too deep", SafetensorsBytes(deep, ""), StatusCode::kDataLoss, {"nested deeper"}},
      {"entry not object",
       SafetensorsBytes(R"({"a":5})", ""),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "not an object"}},
      {"bad dtype",
       SafetensorsBytes(R"({"q":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", Data(4)),
       StatusCode::kInvalidArgument,
       {"tensor \"q\"", "unsupported dtype \"I8\""}},
      {"dtype missing",
       SafetensorsBytes(R"({"a":{"shape":[4],"data_offsets":[0,16]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "\"dtype\""}},
      {"shape missing",
       SafetensorsBytes(R"({"a":{"dtype":"F32","data_offsets":[0,16]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "\"shape\""}},
      {"shape not array",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "\"shape\""}},
      {"negative dim",
       SafetensorsBytes(R"({"neg":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]}})",
                        Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"neg\"", "negative dimension -2"}},
      {"fractional dim",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,16]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "2.5 is not a non-negative integer"}},
      {"too many dims",
       SafetensorsBytes(
           R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,4],"data_offsets":[0,16]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "more than 8 dimensions"}},
      {"shape overflows",
       SafetensorsBytes(
           R"({"big":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
           Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"big\"", "overflows 64 bits"}},
      {"size mismatch",
       SafetensorsBytes(R"({"m":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"m\"", "needs 12 bytes but data_offsets span 16"}},
      {"offsets out of file",
       SafetensorsBytes(R"({"far":{"dtype":"F32","shape":[100],"data_offsets":[0,400]}})",
                        Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"far\"", "data section holds only 16 bytes"}},
      {"truncated data",
       valid.substr(0, valid.size() - 4),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "holds only 12 bytes"}},
      {"offsets reversed",
       SafetensorsBytes(R"({"r":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"r\"", "end before they begin"}},
      {"offsets wrong arity",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "[begin, end]"}},
      {"offsets not integers",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0.0,16]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "data offset 0.0 is not a non-negative integer"}},
      {"negative offset",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "data offset -4"}},
      {"offsets as strings",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":["0","16"]}})", Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "not a non-negative integer"}},
      {"overlapping",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                        R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                        Data(24)),
       StatusCode::kDataLoss,
       {"tensor \"b\"", "overlap tensor \"a\""}},
      {"duplicate names",
       SafetensorsBytes("{" + ok_entry + "," + ok_entry + "}", Data(16)),
       StatusCode::kDataLoss,
       {"names \"a\" twice"}},
      {"duplicate field",
       SafetensorsBytes(R"({"a":{"dtype":"F32","dtype":"F16","shape":[4],"data_offsets":[0,16]}})",
                        Data(16)),
       StatusCode::kDataLoss,
       {"names \"dtype\" twice"}},
      {"unknown field",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"foo":1}})",
                        Data(16)),
       StatusCode::kDataLoss,
       {"tensor \"a\"", "unexpected field \"foo\""}},
      {"empty name",
       SafetensorsBytes(R"({"":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})", ""),
       StatusCode::kDataLoss,
       {"empty name"}},
      {"metadata not object",
       SafetensorsBytes(R"({"__metadata__":[1]})", ""),
       StatusCode::kDataLoss,
       {"\"__metadata__\" is not an object"}},
      {"metadata value not string",
       SafetensorsBytes(R"({"__metadata__":{"k":1}})", ""),
       StatusCode::kDataLoss,
       {"\"__metadata__\" value \"k\" is not a string"}},
  };
}

TEST(SafetensorsTest, CorruptFilesGivePreciseErrors) {
  TempDir dir;
  const auto cases = CorruptCases();
  ASSERT_GE(cases.size(), 20u);
  for (const CorruptCase& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = dir.File("corrupt.safetensors");
    WriteBytes(path, c.bytes);
    auto file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), c.code) << file.status().ToString();
    const std::string& m = file.status().message();
    EXPECT_EQ(m.rfind(path + ": ", 0), 0u) << "message does not start with the file: " << m;
    for (const std::string& needle : c.needles) {
      EXPECT_NE(m.find(needle), std::string::npos) << "missing \"" << needle << "\" in: " << m;
    }
  }
}

// A clone without git-lfs leaves text pointers where the weights belong; their first 8 bytes
// once surfaced as an absurd header length.
TEST(SafetensorsTest, GitLfsPointerSaysToPull) {
  TempDir dir;
  const std::string path = dir.File("model.safetensors");
  WriteBytes(path,
             "version https://git-lfs.github.com/spec/v1\n"
             "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
             "size 16384\n");
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kDataLoss);
  const std::string& m = file.status().message();
  EXPECT_EQ(m.rfind(path + ": ", 0), 0u) << m;
  EXPECT_NE(m.find("Git LFS pointer"), std::string::npos) << m;
  EXPECT_NE(m.find("git lfs pull"), std::string::npos) << m;
  EXPECT_NE(m.find(dir.path().string()), std::string::npos) << "names the directory: " << m;
  EXPECT_EQ(m.find("header length"), std::string::npos) << m;
}

TEST(SafetensorsTest, GapsBetweenTensorsAreAllowed) {
  TempDir dir;
  WriteBytes(dir.File("g.safetensors"),
             SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
                              Data(20)));
  auto file = SafetensorsFile::Open(dir.File("g.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->Find("b")->data - (*file)->Find("a")->data, 12);
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open("/nonexistent/model.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kNotFound);
  EXPECT_NE(file.status().message().find("/nonexistent/model.safetensors"), std::string::npos);
}

TEST(SafetensorsTest, DirectoryIsNotARegularFile) {
  TempDir dir;
  auto file = SafetensorsFile::Open(dir.path().string());
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument);
}

TEST(TensorSetTest, SingleFileDirectory) {
  TempDir dir;
  WriteBytes(dir.File("model.safetensors"), MakeSafetensors({{"x", "F32", {2}, 1.0f}}));
  auto set = TensorSet::OpenDirectory(dir.path().string());
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->size(), 1u);
  ASSERT_NE(set->Find("x"), nullptr);
}

TEST(TensorSetTest, EmptyDirectoryIsNotFound) {
  TempDir dir;
  auto set = TensorSet::OpenDirectory(dir.path().string());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kNotFound);
}

class ShardedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteBytes(dir_.File("s1.safetensors"),
               MakeSafetensors({{"a", "F32", {2}, 1.0f}, {"b", "BF16", {3}, 0.0f}}));
    WriteBytes(dir_.File("s2.safetensors"), MakeSafetensors({{"c", "F32", {1}, 7.0f}}));
  }
  void WriteIndex(const std::string& json) {
    WriteBytes(dir_.File("model.safetensors.index.json"), json);
  }
  Result<TensorSet> Open() { return TensorSet::OpenDirectory(dir_.path().string()); }

  TempDir dir_;
};

TEST_F(ShardedTest, SpansFiles) {
  WriteIndex(R"({"metadata":{"total_size":24},)"
             R"("weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"}})");
  auto set = Open();
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->size(), 3u);
  EXPECT_EQ(set->files().size(), 2u);
  const TensorView* c = set->Find("c");
  ASSERT_NE(c, nullptr);
  float v;
  ConvertToF32(c->dtype, c->data, 1, &v);
  EXPECT_EQ(v, 7.0f);
  auto all = set->Tensors();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0]->name, "a");
  EXPECT_EQ(all[2]->name, "c");
}

TEST_F(ShardedTest, MissingShardFileNamesShardAndTensor) {
  WriteIndex(R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s3.safetensors"}})");
  auto set = Open();
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kNotFound);
  EXPECT_NE(set.status().message().find("s3.safetensors"), std::string::npos);
  EXPECT_NE(set.status().message().find("\"c\""), std::string::npos) << set.status().message();
}

TEST_F(ShardedTest, TensorNotInItsShard) {
  WriteIndex(R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s1.safetensors"}})");
  auto set = Open();
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("tensor \"c\" is listed in s1.safetensors but that file "
                                        "does not contain it"),
            std::string::npos)
      << set.status().message();
}

TEST_F(ShardedTest, UnlistedTensorInShard) {
  WriteIndex(R"({"weight_map":{"a":"s1.safetensors","c":"s2.safetensors"}})");
  auto set = Open();
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("tensor \"b\" is not listed"), std::string::npos)
      << set.status().message();
}

TEST_F(ShardedTest, ShardOutsideDirectoryRejected) {
  WriteIndex(R"({"weight_map":{"a":"../s1.safetensors"}})");
  auto set = Open();
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("not a plain file name"), std::string::npos);
}

TEST_F(ShardedTest, MalformedIndex) {
  for (const char* index :
       {"", "[]", R"({"weight_map":[]})", R"({"weight_map":{"a":1}})", R"({"no_map":{}})"}) {
    SCOPED_TRACE(index);
    WriteIndex(index);
    auto set = Open();
    ASSERT_FALSE(set.ok());
    EXPECT_NE(set.status().message().find("model.safetensors.index.json"), std::string::npos);
  }
}

TEST_F(ShardedTest, CorruptShardIsReportedWithIndexContext) {
  WriteBytes(dir_.File("s2.safetensors"), "\x05");
  WriteIndex(R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"}})");
  auto set = Open();
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(set.status().message().find("s2.safetensors"), std::string::npos);
}

TEST(TensorSetTest, HeaderParserAcceptsEmptyObject) {
  auto header = ParseSafetensorsHeader("{}", 0, "x");
  ASSERT_TRUE(header.ok());
  EXPECT_TRUE(header->entries.empty());
}

}  // namespace
}  // namespace zaya
