#include "tests/engine/weights/test_util.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>

namespace zaya::testing {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          ("zaya-weights-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string SafetensorsBytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string MakeSafetensors(const std::vector<FakeTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const FakeTensor& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    const size_t elem = t.dtype == "F32" ? 4 : 2;
    const size_t begin = data.size();
    if (t.dtype == "F32") {
      for (int64_t i = 0; i < numel; ++i) {
        char buf[4];
        std::memcpy(buf, &t.fill, 4);
        data.append(buf, 4);
      }
    } else {
      data.append(static_cast<size_t>(numel) * elem, '\0');
    }
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  return SafetensorsBytes(header.dump(), data);
}

std::string SafetensorsFromViews(const std::vector<const TensorView*>& views) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const TensorView* v : views) {
    const size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(v->data), v->nbytes);
    header[v->name] = {{"dtype", std::string(DTypeName(v->dtype))},
                       {"shape", v->shape},
                       {"data_offsets", {begin, data.size()}}};
  }
  return SafetensorsBytes(header.dump(), data);
}

std::string SourceDir() { return ZAYA_SOURCE_DIR; }

std::string TinyDir(const std::string& name) {
  return SourceDir() + "/tests/data/tiny-zaya/" + name;
}

}  // namespace zaya::testing
