#include "engine/weights/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/git_lfs.h"
#include "base/json_depth.h"

namespace zaya {
namespace {

using nlohmann::json;

// Deepest nesting a valid header needs: root object -> entry object -> shape array.
constexpr int kMaxHeaderDepth = 4;

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

Status Corrupt(std::string_view file, std::string_view what) {
  return DataLoss(std::string(file) + ": " + std::string(what));
}

Status BadTensor(std::string_view file, std::string_view tensor, std::string_view what) {
  return DataLoss(std::string(file) + ": tensor " + Quote(tensor) + ": " + std::string(what));
}

Result<SafetensorsEntry> ParseEntry(std::string_view file, const std::string& name,
                                    const json& value) {
  if (name.empty()) return Corrupt(file, "a tensor has an empty name");
  if (!value.is_object()) {
    return BadTensor(file, name, "entry is not an object with dtype, shape and data_offsets");
  }
  for (const auto& [key, unused] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return BadTensor(file, name, "unexpected field " + Quote(key));
    }
  }
  SafetensorsEntry entry;
  entry.name = name;

  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end() || !dtype_it->is_string()) {
    return BadTensor(file, name, "missing or non-string \"dtype\"");
  }
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  auto dtype = ParseDType(dtype_name);
  if (!dtype) {
    return InvalidArgument(std::string(file) + ": tensor " + Quote(name) + ": unsupported dtype " +
                           Quote(dtype_name) +
                           " (zayad loads BF16, F16 and F32; convert the checkpoint)");
  }
  entry.dtype = *dtype;

  auto shape_it = value.find("shape");
  if (shape_it == value.end() || !shape_it->is_array()) {
    return BadTensor(file, name, "missing or non-array \"shape\"");
  }
  if (shape_it->size() > 8) return BadTensor(file, name, "shape has more than 8 dimensions");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& dim : *shape_it) {
    if (dim.is_number_integer() && !dim.is_number_unsigned()) {
      return BadTensor(file, name, "negative dimension " + dim.dump() + " in shape");
    }
    if (!dim.is_number_unsigned()) {
      return BadTensor(file, name, "dimension " + dim.dump() + " is not a non-negative integer");
    }
    const uint64_t d = dim.get<uint64_t>();
    if (d > static_cast<uint64_t>(INT64_MAX)) return BadTensor(file, name, "dimension too large");
    entry.shape.push_back(static_cast<int64_t>(d));
    overflow = overflow || __builtin_mul_overflow(numel, d, &numel);
  }
  uint64_t nbytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, DTypeSize(entry.dtype), &nbytes);
  if (overflow) return BadTensor(file, name, "shape " + shape_it->dump() + " overflows 64 bits");

  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return BadTensor(file, name, "\"data_offsets\" must be an array [begin, end]");
  }
  for (const json& off : *offsets_it) {
    if (!off.is_number_unsigned()) {
      return BadTensor(file, name, "data offset " + off.dump() + " is not a non-negative integer");
    }
  }
  entry.begin = (*offsets_it)[0].get<uint64_t>();
  entry.end = (*offsets_it)[1].get<uint64_t>();
  if (entry.begin > entry.end) {
    return BadTensor(file, name,
                     "data_offsets [" + std::to_string(entry.begin) + ", " +
                         std::to_string(entry.end) + "] end before they begin");
  }
  if (entry.end - entry.begin != nbytes) {
    return BadTensor(file, name,
                     "shape " + FormatShape(entry.shape) + " x " +
                         std::string(DTypeName(entry.dtype)) + " needs " + std::to_string(nbytes) +
                         " bytes but data_offsets span " + std::to_string(entry.end - entry.begin));
  }
  return entry;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::ShapeString() const { return FormatShape(shape); }

std::string FormatShape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

Result<SafetensorsHeader> ParseSafetensorsHeader(std::string_view header_json, uint64_t data_size,
                                                 std::string_view file_label) {
  if (JsonNestingDepth(header_json, kMaxHeaderDepth) > kMaxHeaderDepth) {
    return Corrupt(file_label, "header JSON is nested deeper than a safetensors header can be");
  }

  // Duplicate keys are legal JSON but make a header ambiguous; nlohmann keeps the last one, so
  // they are caught while parsing, one key set per open object.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };

  json root;
  try {
    root = json::parse(header_json.begin(), header_json.end(), on_event);
  } catch (const json::exception& e) {
    return Corrupt(file_label, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) return Corrupt(file_label, "header names " + Quote(duplicate) + " twice");
  if (!root.is_object()) return Corrupt(file_label, "header JSON is not an object");

  SafetensorsHeader header;
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return Corrupt(file_label, "\"__metadata__\" is not an object");
      for (const auto& [key, item] : value.items()) {
        if (!item.is_string()) {
          return Corrupt(file_label, "\"__metadata__\" value " + Quote(key) + " is not a string");
        }
        header.metadata[key] = item.get<std::string>();
      }
      continue;
    }
    ZAYA_ASSIGN_OR_RETURN(SafetensorsEntry entry, ParseEntry(file_label, name, value));
    if (entry.end > data_size) {
      return BadTensor(file_label, name,
                       "data_offsets end at " + std::to_string(entry.end) +
                           " but the data section holds only " + std::to_string(data_size) +
                           " bytes (file truncated?)");
    }
    header.entries.push_back(std::move(entry));
  }

  std::sort(header.entries.begin(), header.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& entry : header.entries) {
    if (entry.begin == entry.end) continue;  // empty tensors occupy no bytes
    if (previous != nullptr && entry.begin < previous->end) {
      return BadTensor(file_label, entry.name,
                       "bytes [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
                           ") overlap tensor " + Quote(previous->name) + " [" +
                           std::to_string(previous->begin) + ", " + std::to_string(previous->end) +
                           ")");
    }
    previous = &entry;
  }
  return header;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string msg = path + ": cannot open: " + std::strerror(err);
    return err == ENOENT ? NotFound(msg) : Unavailable(msg);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(path + ": not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Corrupt(path, "file is " + std::to_string(size) +
                             " bytes, shorter than the 8-byte header length (truncated?)");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    return Unavailable(path + ": mmap failed: " + std::strerror(map_errno));
  }
  file->map_ = map;
  file->map_size_ = size;

  const auto* bytes = static_cast<const unsigned char*>(map);
  if (IsGitLfsPointer(std::string_view(reinterpret_cast<const char*>(bytes), size))) {
    return Corrupt(path, GitLfsPointerAdvice(path));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Corrupt(path, "header length " + std::to_string(header_len) +
                             " exceeds the 100 MiB limit (not a safetensors file?)");
  }
  if (header_len > size - 8) {
    return Corrupt(path, "header length " + std::to_string(header_len) +
                             " runs past the end of the " + std::to_string(size) +
                             "-byte file (truncated?)");
  }
  const std::string_view header_json(reinterpret_cast<const char*>(bytes + 8), header_len);
  const uint64_t data_size = size - 8 - header_len;
  ZAYA_ASSIGN_OR_RETURN(SafetensorsHeader header,
                        ParseSafetensorsHeader(header_json, data_size, path));

  const std::byte* data = static_cast<const std::byte*>(map) + 8 + header_len;
  file->metadata_ = std::move(header.metadata);
  file->tensors_.reserve(header.entries.size());
  for (SafetensorsEntry& entry : header.entries) {
    TensorView view;
    view.name = std::move(entry.name);
    view.dtype = entry.dtype;
    view.shape = std::move(entry.shape);
    view.data = data + entry.begin;
    view.nbytes = static_cast<size_t>(entry.end - entry.begin);
    file->by_name_.emplace(view.name, file->tensors_.size());
    file->tensors_.push_back(std::move(view));
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Status TensorSet::Add(std::unique_ptr<SafetensorsFile> file) {
  for (const TensorView& view : file->tensors()) {
    auto [it, inserted] = by_name_.emplace(view.name, &view);
    if (!inserted) {
      return DataLoss(file->path() + ": tensor " + Quote(view.name) + " is also in another shard");
    }
  }
  files_.push_back(std::move(file));
  return Status::Ok();
}

Result<TensorSet> TensorSet::OpenFile(const std::string& path) {
  ZAYA_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  TensorSet set;
  ZAYA_RETURN_IF_ERROR(set.Add(std::move(file)));
  return set;
}

Result<TensorSet> TensorSet::OpenDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    const fs::path single = fs::path(dir) / "model.safetensors";
    if (!fs::exists(single, ec)) {
      return NotFound(dir + ": neither model.safetensors.index.json nor model.safetensors exists");
    }
    return OpenFile(single.string());
  }

  const std::string index_label = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) return Unavailable(index_label + ": cannot read");
  const std::string content = text.str();
  if (content.size() > kMaxSafetensorsHeaderBytes) {
    return Corrupt(index_label, "index file exceeds 100 MiB");
  }
  if (JsonNestingDepth(content, 8) > 8) return Corrupt(index_label, "index JSON nested too deep");
  json index;
  try {
    index = json::parse(content);
  } catch (const json::exception& e) {
    return Corrupt(index_label, std::string("not valid JSON: ") + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return Corrupt(index_label, "expected an object with a \"weight_map\" object");
  }

  // Shard file -> tensors the index puts there.
  std::map<std::string, std::set<std::string>> shards;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      return Corrupt(index_label, "weight_map entry " + Quote(name) + " is not a file name");
    }
    const std::string& shard_name = shard.get_ref<const std::string&>();
    if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "." ||
        shard_name == "..") {
      return Corrupt(index_label, "weight_map entry " + Quote(name) + " names shard " +
                                      Quote(shard_name) + ", which is not a plain file name");
    }
    shards[shard_name].insert(name);
  }

  TensorSet set;
  for (const auto& [shard_name, names] : shards) {
    const std::string shard_path = (fs::path(dir) / shard_name).string();
    auto file = SafetensorsFile::Open(shard_path);
    if (!file.ok()) {
      return file.status().WithContext(index_label + ": shard " + shard_name + " (listed for " +
                                       std::to_string(names.size()) + " tensors, e.g. " +
                                       Quote(*names.begin()) + ")");
    }
    for (const std::string& name : names) {
      if ((*file)->Find(name) == nullptr) {
        return DataLoss(index_label + ": tensor " + Quote(name) + " is listed in " + shard_name +
                        " but that file does not contain it");
      }
    }
    for (const TensorView& view : (*file)->tensors()) {
      if (names.count(view.name) == 0) {
        return DataLoss(shard_path + ": tensor " + Quote(view.name) + " is not listed for " +
                        shard_name + " in " + index_label);
      }
    }
    ZAYA_RETURN_IF_ERROR(set.Add(std::move(file).value()));
  }
  return set;
}

const TensorView* TensorSet::Find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<const TensorView*> TensorSet::Tensors() const {
  std::vector<const TensorView*> out;
  out.reserve(by_name_.size());
  for (const auto& [name, view] : by_name_) out.push_back(view);
  return out;
}

}  // namespace zaya
