// The HIP plugin as the host sees it on a machine without a GPU: it loads (its runtime libraries
// resolve), scores 0 with a reason, is refused by the loader as kUnavailable, and "auto" falls back
// to the CPU backend. On a machine with a usable GPU the refusal tests skip.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "plugins/loader.h"

namespace zaya {
namespace {

// Paths of the plugin flavours this build produced ("" when not built).
struct Flavour {
  const char* name;
  std::string path;
};

std::vector<Flavour> BuiltFlavours() {
  std::vector<Flavour> out;
  if (std::string(ZAYA_HIP_AMD_PLUGIN).size() > 0) out.push_back({"amd", ZAYA_HIP_AMD_PLUGIN});
  if (std::string(ZAYA_HIP_NVIDIA_PLUGIN).size() > 0) {
    out.push_back({"nvidia", ZAYA_HIP_NVIDIA_PLUGIN});
  }
  return out;
}

// The plugin's own score, through dlopen, without the loader.
int RawScore(const std::string& path, std::string* reason) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    ADD_FAILURE() << "dlopen " << path << ": " << dlerror();
    return -1;
  }
  auto score = reinterpret_cast<zaya_backend_score_fn>(dlsym(h, ZAYA_BACKEND_SCORE_SYMBOL));
  EXPECT_NE(score, nullptr) << "the plugin must export zaya_backend_score";
  EXPECT_NE(dlsym(h, ZAYA_BACKEND_ENTRY_SYMBOL), nullptr);
  if (score == nullptr) return -1;
  const char* r = nullptr;
  const int s = score(&r);
  *reason = r != nullptr ? r : "";
  return s;
}

TEST(HipPluginTest, EveryBuiltFlavourLoadsAndScores) {
  const auto flavours = BuiltFlavours();
  if (flavours.empty()) GTEST_SKIP() << "neither hipcc nor nvcc was found: no GPU plugin built";
  for (const auto& f : flavours) {
    SCOPED_TRACE(f.name);
    ASSERT_TRUE(std::filesystem::exists(f.path)) << f.path;
    std::string reason;
    const int score = RawScore(f.path, &reason);
    if (score == 0) {
      EXPECT_FALSE(reason.empty()) << "a zero score must say why";
    } else {
      EXPECT_GT(score, 1) << "a usable GPU must outrank the CPU backend";
    }
  }
}

TEST(HipPluginTest, WithoutAGpuTheLoaderRefusesItWithTheReason) {
  const auto flavours = BuiltFlavours();
  if (flavours.empty()) GTEST_SKIP() << "no GPU plugin built";
  for (const auto& f : flavours) {
    SCOPED_TRACE(f.name);
    std::string reason;
    if (RawScore(f.path, &reason) != 0) {
      GTEST_SKIP() << f.name << " has a usable GPU here; the refusal path cannot be seen";
    }
    EXPECT_NE(reason.find(" GPU found: "), std::string::npos) << reason;
    EXPECT_NE(reason.find("GetDeviceCount returned"), std::string::npos) << reason;
    auto p = LoadBackendPlugin(f.path);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status().ToString();
    EXPECT_NE(p.status().message().find("cannot run on this machine"), std::string::npos)
        << p.status().message();
    EXPECT_NE(p.status().message().find(reason), std::string::npos) << "carries the reason";
  }
}

TEST(HipPluginTest, AutoFallsBackToTheCpuAndHipRefusesToStart) {
  const std::string amd = ZAYA_HIP_AMD_PLUGIN;
  if (amd.empty()) GTEST_SKIP() << "the AMD flavour was not built (no hipcc)";
  std::string reason;
  if (RawScore(amd, &reason) != 0) GTEST_SKIP() << "an AMD GPU is usable here";
  const std::string dir = std::filesystem::path(amd).parent_path().string();
  auto any = Backend::Open("auto", dir, 0, 1);
  ASSERT_TRUE(any.ok()) << any.status().ToString();
  EXPECT_EQ((*any)->name(), "cpu");
  auto hip = Backend::Open("hip", dir, 0, 1);
  ASSERT_FALSE(hip.ok());
  EXPECT_EQ(hip.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(hip.status().message().find("no AMD GPU found"), std::string::npos)
      << hip.status().message();
}

}  // namespace
}  // namespace zaya
