#include "plugins/loader.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdio>
#include <fstream>
#include <string>

namespace zaya {
namespace {

const std::string kFake = ZAYA_FAKE_PLUGIN_DIR;

void ExpectRefused(const std::string& file, StatusCode code, const std::string& fragment) {
  auto p = LoadBackendPlugin(kFake + "/" + file);
  ASSERT_FALSE(p.ok()) << file;
  EXPECT_EQ(p.status().code(), code) << p.status().ToString();
  EXPECT_NE(p.status().message().find(fragment), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find(file), std::string::npos) << "names the file";
}

TEST(LoaderTest, RefusesAWrongAbiVersionNamingBoth) {
  ExpectRefused("fake_wrong_major.so", StatusCode::kFailedPrecondition,
                "implements backend ABI 7.0");
  auto p = LoadBackendPlugin(kFake + "/fake_wrong_major.so");
  EXPECT_NE(p.status().message().find("needs ABI 2.x"), std::string::npos);
}

TEST(LoaderTest, RefusesAMissingEntryPoint) {
  ExpectRefused("fake_no_entry.so", StatusCode::kInvalidArgument,
                "does not export zaya_backend_entry_v1");
}

TEST(LoaderTest, RefusesAPluginWhoseScoreIsZeroWithItsReason) {
  ExpectRefused("fake_score_zero.so", StatusCode::kUnavailable, "no device found (fake)");
}

TEST(LoaderTest, RefusesAnEmptyRequiredFunction) {
  ExpectRefused("fake_null_execute.so", StatusCode::kInvalidArgument, "required");
}

// Backend::Create once built a std::string from the NULL name and threw.
TEST(LoaderTest, RefusesANullName) {
  ExpectRefused("fake_null_name.so", StatusCode::kInvalidArgument, "name empty (NULL)");
}

TEST(LoaderTest, RefusesATooSmallFunctionTable) {
  ExpectRefused("fake_short_table.so", StatusCode::kFailedPrecondition,
                "function table of 16 bytes");
  // The required members end at execute (ABI 1.0's table, and 2.0's); the message once named
  // sizeof(zaya_backend_api), which a 1.1 table only reaches.
  ExpectRefused("fake_short_table.so", StatusCode::kFailedPrecondition,
                "smaller than the " + std::to_string(offsetof(zaya_backend_api, weight_prepare)) +
                    " bytes ABI 2.0 requires");
}

TEST(LoaderTest, RefusesAFileThatIsNotASharedObject) {
  const std::string path = testing::TempDir() + "/libzaya-backend-garbage.so";
  std::ofstream(path) << "this is not an ELF file";
  auto p = LoadBackendPlugin(path);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(p.status().message().find("cannot load backend plugin"), std::string::npos);
  std::remove(path.c_str());
}

TEST(LoaderTest, MissingFileIsNotFound) {
  auto p = LoadBackendPlugin("/nonexistent/libzaya-backend-cpu.so");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kNotFound);
}

TEST(LoaderTest, APluginThatFailsToStartIsAnErrorNotACrash) {
  auto p = LoadBackendPlugin(kFake + "/fake_device_error.so");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto b = Backend::Create(*p, 0, 1);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("failed to start"), std::string::npos);
}

// weight_prepare is optional (ABI 1.1): the host must not read it from a 1.0 table, and must pass
// on the plugin's failure where it is there.
TEST(LoaderTest, PrepareWeightOnlyWhereTheTableHasIt) {
  zaya_tensor w{};
  w.dtype = ZAYA_DTYPE_I8;
  w.ndim = 2;
  w.shape[0] = 4;
  w.shape[1] = 256;
  auto old = LoadBackendPlugin(kFake + "/fake_abi_1_0.so");
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  auto b = Backend::Create(*old, 0, 1);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE((*b)->PrepareWeight(w, zaya_tensor{}).ok());

  auto fails = LoadBackendPlugin(kFake + "/fake_prepare_fails.so");
  ASSERT_TRUE(fails.ok()) << fails.status().ToString();
  auto c = Backend::Create(*fails, 0, 1);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const Status s = (*c)->PrepareWeight(w, zaya_tensor{});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("weight_prepare"), std::string::npos) << s.ToString();
}

TEST(LoaderTest, CpuPluginLoadsAndAutoFallsBackToIt) {
  auto cpu = Backend::Open("cpu", "", 0, 1);
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  EXPECT_EQ((*cpu)->name(), "cpu");
  auto info = (*cpu)->DeviceInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, ZAYA_DEVICE_CPU);
  // No usable HIP plugin in this build tree (or no GPU): auto picks the CPU.
  auto any = Backend::Open("auto", "", 0, 1);
  ASSERT_TRUE(any.ok()) << any.status().ToString();
  EXPECT_EQ((*any)->name(), "cpu");
  auto bad = Backend::Open("tpu", "", 0, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("use cpu, hip or auto"), std::string::npos);
}

TEST(LoaderTest, BackendRejectsOutOfBoundsBufferAccess) {
  auto cpu = Backend::Open("cpu", "", 0, 1);
  ASSERT_TRUE(cpu.ok());
  auto buf = (*cpu)->Alloc(ZAYA_BUFFER_SCRATCH, 64);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ((*cpu)->allocated(ZAYA_BUFFER_SCRATCH), 64u);
  char data[128] = {};
  EXPECT_FALSE((*cpu)->Write(*buf, 32, data, 64).ok());
  EXPECT_TRUE((*cpu)->Write(*buf, 0, data, 64).ok());
  // An op reading past its buffer is refused with the op's index, not executed.
  zaya_op op{};
  op.type = ZAYA_OP_RMSNORM;
  op.src[0] = {buf->get(), 0, ZAYA_DTYPE_F32, 2, {4, 8}};  // 128 bytes > 64
  op.dst[0] = op.src[0];
  auto st = (*cpu)->Execute({op});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("outside its buffer"), std::string::npos) << st.message();
  op.type = 999;
  st = (*cpu)->Execute({op});
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
  *buf = BufferHandle();
  EXPECT_EQ((*cpu)->allocated(ZAYA_BUFFER_SCRATCH), 0u);
}

}  // namespace
}  // namespace zaya
