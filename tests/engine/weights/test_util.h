// Helpers for the weights tests: write safetensors files and config folders in a temp dir.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/weights/safetensors.h"

namespace zaya::testing {

// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Writes raw bytes.
void WriteBytes(const std::string& path, const std::string& bytes);
std::string ReadBytes(const std::string& path);

// 8-byte little-endian length + header + data.
std::string SafetensorsBytes(const std::string& header, const std::string& data);

struct FakeTensor {
  std::string name;
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  float fill = 0.0f;  // F32 only; other dtypes get zero bytes
};

// A valid file holding `tensors` back to back.
std::string MakeSafetensors(const std::vector<FakeTensor>& tensors);

// A valid file holding copies of `views` (names, dtypes, shapes and bytes).
std::string SafetensorsFromViews(const std::vector<const TensorView*>& views);

std::string SourceDir();
std::string TinyDir(const std::string& name);  // tests/data/tiny-zaya/<name>

}  // namespace zaya::testing
