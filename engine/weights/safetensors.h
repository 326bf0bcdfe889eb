// Read-only access to safetensors files (https://github.com/huggingface/safetensors) and to
// checkpoints sharded over several of them (model.safetensors.index.json).
//
// File format: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data section.
// The JSON maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
// to the data section) plus an optional "__metadata__" object of string values.
//
// Validation is strict because model files are untrusted input: N must fit the file and be at most
// kMaxHeaderBytes; the JSON must be an object nested at most 4 deep without duplicate names; each
// entry has exactly those three fields; dtype is BF16, F16 or F32; dimensions are non-negative
// integers; prod(shape) * dtype size equals end - begin; begin <= end <= data size; byte ranges do
// not overlap (gaps between them are allowed). Every error message names the file and, where there
// is one, the tensor. Nothing is read outside the mapping, whatever the file holds.
//
// Ownership: SafetensorsFile owns a read-only private mmap of the whole file; TensorView::data
// points into it and stays valid as long as the SafetensorsFile (or the TensorSet holding it)
// lives. Data pointers carry no alignment guarantee beyond 1; read with memcpy or ConvertToF32.
//
// Thread safety: immutable after Open; all const methods may be called from several threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "engine/weights/dtype.h"

namespace zaya {

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // row-major, outermost first; {} for a scalar
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  // "[1280, 1, 2]"
  std::string ShapeString() const;
};

// "[1280, 1, 2]" for any shape.
std::string FormatShape(const std::vector<int64_t>& shape);

// The largest header accepted (real checkpoints use well under 1 MiB per shard).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// One parsed header entry before it is bound to file data.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets into the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in data-offset order
  std::map<std::string, std::string> metadata;
};

// Validates the JSON header of a file whose data section is `data_size` bytes. `file_label` names
// the file in error messages. Exposed separately so that it can be fuzzed without files.
Result<SafetensorsHeader> ParseSafetensorsHeader(std::string_view header_json, uint64_t data_size,
                                                 std::string_view file_label);

class SafetensorsFile {
 public:
  // Maps `path` and validates it. Errors: kNotFound (no such file), kDataLoss (truncated or corrupt
  // file), kInvalidArgument (valid JSON that describes something zayad cannot load, e.g. a dtype).
  static Result<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // In data-offset order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const TensorView* Find(std::string_view name) const;

 private:
  SafetensorsFile() = default;

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, size_t, std::less<>> by_name_;  // name -> position in tensors_
};

// The tensors of one checkpoint: a single model.safetensors or shards listed by
// model.safetensors.index.json. Move-only owner of its files.
class TensorSet {
 public:
  // `dir` holds model.safetensors.index.json (preferred when present) or model.safetensors.
  // The index must be {"weight_map": {tensor: shard file name}, "metadata"?: {...}}; shard names
  // are plain file names inside `dir`. Every listed tensor must be in its shard, every tensor of a
  // shard must be listed for that shard, and no name may appear twice.
  static Result<TensorSet> OpenDirectory(const std::string& dir);
  // A single file.
  static Result<TensorSet> OpenFile(const std::string& path);

  TensorSet(TensorSet&&) = default;
  TensorSet& operator=(TensorSet&&) = default;

  // nullptr when absent.
  const TensorView* Find(std::string_view name) const;
  // Sorted by name.
  std::vector<const TensorView*> Tensors() const;
  size_t size() const { return by_name_.size(); }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  TensorSet() = default;
  Status Add(std::unique_ptr<SafetensorsFile> file);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> by_name_;
};

}  // namespace zaya
