#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "base/git_lfs.h"
#include "base/json_depth.h"
#include "engine/tokenizer/pretokenize.h"
#include "engine/tokenizer/utf8.h"

namespace zaya {

namespace ti = tokenizer_internal;
using nlohmann::json;

namespace {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct NormStep {
  enum class Kind { kReplace, kPrepend } kind;
  std::string from, to;
};

struct PreStep {
  enum class Kind { kSplitString, kSplitRegex, kByteLevel } kind;
  std::string pattern;
  ti::RegexKind regex = ti::RegexKind::kGpt2;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool add_prefix_space = false;
  bool use_regex = false;
};

struct DecStep {
  enum class Kind { kReplace, kByteFallback, kStrip, kByteLevel } kind;
  std::string from, to;
  int start = 0, stop = 0;
};

struct Merge {
  int32_t rank;
  int32_t id;
};

// Byte trie over added-token contents; longest match wins (as in the JS DictionarySplitter).
class AddedTrie {
 public:
  void Insert(std::string_view s, int32_t id) {
    if (s.empty()) return;
    first_byte_[static_cast<unsigned char>(s[0])] = true;
    uint32_t node = 0;
    for (char ch : s) {
      const uint64_t key = (uint64_t{node} << 8) | static_cast<unsigned char>(ch);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        terminal_.push_back(-1);
        it = edges_.emplace(key, static_cast<uint32_t>(terminal_.size() - 1)).first;
      }
      node = it->second;
    }
    terminal_[node] = id;
  }
  // Longest match at text[i]: returns (id, length) or (-1, 0).
  std::pair<int32_t, size_t> Match(std::string_view text, size_t i) const {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) return {-1, 0};
    uint32_t node = 0;
    std::pair<int32_t, size_t> best{-1, 0};
    for (size_t j = i; j < text.size(); ++j) {
      auto it = edges_.find((uint64_t{node} << 8) | static_cast<unsigned char>(text[j]));
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[node] >= 0) best = {terminal_[node], j + 1 - i};
    }
    return best;
  }
  bool empty() const { return terminal_.size() <= 1; }

 private:
  std::array<bool, 256> first_byte_{};
  std::unordered_map<uint64_t, uint32_t> edges_;
  std::vector<int32_t> terminal_{-1};  // node 0 is the root
};

struct AddedToken {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip;
};

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (true) {
    const size_t j = s.find(from, i);
    if (j == std::string_view::npos) break;
    out.append(s.substr(i, j - i));
    out.append(to);
    i = j + from.size();
  }
  out.append(s.substr(i));
  return out;
}

bool IsJsSpace(char32_t c) { return ti::IsWhitespace(c) || c == 0xFEFF; }

std::string_view TrimEnd(std::string_view s) {
  while (!s.empty()) {
    // Find the start of the last code point.
    size_t k = s.size() - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    size_t len = 0;
    if (!IsJsSpace(utf8::DecodeOne(s, k, &len))) break;
    s = s.substr(0, k);
  }
  return s;
}

std::string_view TrimStart(std::string_view s) {
  while (!s.empty()) {
    size_t len = 0;
    if (!IsJsSpace(utf8::DecodeOne(s, 0, &len))) break;
    s = s.substr(len);
  }
  return s;
}

std::string ReadFile(const std::filesystem::path& p, Status* status) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    *status = NotFound("cannot open " + p.string());
    return {};
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A token in tokenizer_config.json: "text" or {"content": "text", ...}.
std::optional<std::string> ConfigToken(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return std::nullopt;
}

Result<SplitBehavior> ParseBehavior(const json& j) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return InvalidArgument("pre_tokenizer Split: unknown behavior " + j.dump());
}

// Applies a split behaviour to `word` given the sorted, non-overlapping, non-empty match spans.
void ApplySplit(std::string_view word, const std::vector<std::pair<size_t, size_t>>& matches,
                SplitBehavior behavior, std::vector<std::string>* out) {
  // Pieces as (begin, end, is_match), covering the word.
  std::vector<std::tuple<size_t, size_t, bool>> pieces;
  size_t pos = 0;
  for (auto [b, e] : matches) {
    if (b > pos) pieces.emplace_back(pos, b, false);
    pieces.emplace_back(b, e, true);
    pos = e;
  }
  if (pos < word.size()) pieces.emplace_back(pos, word.size(), false);

  std::vector<std::pair<size_t, size_t>> spans;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (auto [b, e, m] : pieces) {
        if (!m) spans.emplace_back(b, e);
      }
      break;
    case SplitBehavior::kIsolated:
      for (auto [b, e, m] : pieces) spans.emplace_back(b, e);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (auto [b, e, m] : pieces) {
        if (m && !prev_match && !spans.empty()) {
          spans.back().second = e;
        } else {
          spans.emplace_back(b, e);
        }
        prev_match = m;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev_match = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        auto [b, e, m] = *it;
        if (m && !prev_match && !spans.empty()) {
          spans.back().first = b;
        } else {
          spans.emplace_back(b, e);
        }
        prev_match = m;
      }
      std::reverse(spans.begin(), spans.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      bool first = true;
      for (auto [b, e, m] : pieces) {
        if (!first && m == prev_match) {
          spans.back().second = e;
        } else {
          spans.emplace_back(b, e);
        }
        prev_match = m;
        first = false;
      }
      break;
    }
  }
  for (auto [b, e] : spans) {
    if (e > b) out->emplace_back(word.substr(b, e - b));
  }
}

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> id_to_token;
  std::unordered_map<std::string, int32_t> token_to_id;
  std::unordered_map<char32_t, int32_t> char_to_id;  // single-code-point tokens
  std::unordered_map<uint64_t, Merge> merges;        // (left id << 32 | right id) -> merge
  bool byte_fallback = false;
  std::array<int32_t, 256> byte_ids{};  // -1 when <0xXX> is missing
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool ignore_merges = false;

  std::vector<AddedToken> added;
  std::vector<int32_t> added_index;  // id -> index into `added`, -1 if not an added token
  AddedTrie trie;
  std::vector<bool> special;

  std::vector<NormStep> normalizers;
  std::vector<PreStep> pre_tokenizers;
  std::vector<DecStep> decoders;
  std::vector<int32_t> prefix_ids, suffix_ids;  // post-processor around sequence A
  std::vector<std::string> token_bytes;         // decoder output per id
  bool clean_up_spaces = false;

  std::optional<int32_t> bos;
  std::vector<int32_t> eos;

  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token.size()); }

  Status ParseModel(const json& m);
  Status ParseNormalizer(const json& n);
  Status ParsePreTokenizer(const json& p);
  Status ParsePostProcessor(const json& p);
  Status ParseDecoder(const json& d, bool* after_fuse);
  void ParseConfig(const json& c);
  void ParseGenerationConfig(const json& c);

  Status Bpe(std::string_view word, std::vector<int32_t>* out) const;
  Status EncodeSection(std::string_view text, std::vector<int32_t>* out) const;
};

Status Tokenizer::Impl::ParseModel(const json& m) {
  if (!m.is_object())
    return InvalidArgument("tokenizer.json: \"model\" is missing or not an object");
  const std::string type = m.value("type", std::string("BPE"));
  if (type != "BPE") {
    return Unimplemented("tokenizer.json: model type \"" + type +
                         "\" is unsupported (only BPE is implemented)");
  }
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() != 0.0) {
    return Unimplemented("tokenizer.json: BPE dropout is unsupported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(key) && !m[key].is_null() && !m[key].get<std::string>().empty()) {
      return Unimplemented(std::string("tokenizer.json: BPE ") + key + " is unsupported");
    }
  }
  if (!m.contains("vocab") || !m["vocab"].is_object()) {
    return InvalidArgument("tokenizer.json: model.vocab is missing or not an object");
  }
  for (const auto& [tok, idj] : m["vocab"].items()) {
    if (!idj.is_number_integer())
      return InvalidArgument("tokenizer.json: vocab id of " + tok + " is not an integer");
    const int64_t id = idj.get<int64_t>();
    if (id < 0 || id > (1 << 24)) {
      return InvalidArgument("tokenizer.json: vocab id " + std::to_string(id) + " is out of range");
    }
    if (id >= static_cast<int64_t>(id_to_token.size())) id_to_token.resize(id + 1);
    id_to_token[id] = tok;
    token_to_id[tok] = static_cast<int32_t>(id);
  }
  byte_fallback = m.value("byte_fallback", false);
  fuse_unk = m.value("fuse_unk", false);
  ignore_merges = m.value("ignore_merges", false);
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = token_to_id.find(m["unk_token"].get<std::string>());
    if (it == token_to_id.end()) {
      return InvalidArgument("tokenizer.json: unk_token " + m["unk_token"].dump() +
                             " is not in the vocabulary");
    }
    unk_id = it->second;
  }
  if (m.contains("merges")) {
    const json& ms = m["merges"];
    if (!ms.is_array()) return InvalidArgument("tokenizer.json: model.merges is not an array");
    merges.reserve(ms.size());
    int32_t rank = 0;
    for (const json& e : ms) {
      std::string a, b;
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos) {
          return InvalidArgument("tokenizer.json: merge \"" + s + "\" has no space separator");
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        a = e[0].get<std::string>();
        b = e[1].get<std::string>();
      } else {
        return InvalidArgument("tokenizer.json: merge " + e.dump() +
                               " is neither \"a b\" nor [a, b]");
      }
      auto ia = token_to_id.find(a), ib = token_to_id.find(b), iab = token_to_id.find(a + b);
      if (ia == token_to_id.end() || ib == token_to_id.end() || iab == token_to_id.end()) {
        return InvalidArgument("tokenizer.json: merge " + e.dump() +
                               " uses a token that is not in the vocabulary");
      }
      const uint64_t key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
      merges.emplace(key, Merge{rank, iab->second});  // first (lowest-rank) entry wins
      ++rank;
    }
  }
  return Status::Ok();
}

Status Tokenizer::Impl::ParseNormalizer(const json& n) {
  if (n.is_null()) return Status::Ok();
  if (!n.is_object()) return InvalidArgument("tokenizer.json: normalizer is not an object");
  const std::string type = n.value("type", std::string());
  if (type == "Sequence") {
    if (!n.contains("normalizers") || !n["normalizers"].is_array()) {
      return InvalidArgument("tokenizer.json: normalizer Sequence has no normalizers array");
    }
    for (const json& s : n["normalizers"]) ZAYA_RETURN_IF_ERROR(ParseNormalizer(s));
    return Status::Ok();
  }
  if (type == "Replace") {
    const json& p = n.value("pattern", json());
    if (!p.is_object() || !p.contains("String") || !p["String"].is_string()) {
      return Unimplemented("tokenizer.json: normalizer Replace with pattern " + p.dump() +
                           " is unsupported (only {\"String\": ...} patterns)");
    }
    normalizers.push_back({NormStep::Kind::kReplace, p["String"].get<std::string>(),
                           n.value("content", std::string())});
    return Status::Ok();
  }
  if (type == "Prepend") {
    normalizers.push_back({NormStep::Kind::kPrepend, "", n.value("prepend", std::string())});
    return Status::Ok();
  }
  return Unimplemented("tokenizer.json: normalizer type \"" + type + "\" is unsupported");
}

Status Tokenizer::Impl::ParsePreTokenizer(const json& p) {
  if (p.is_null()) return Status::Ok();
  if (!p.is_object()) return InvalidArgument("tokenizer.json: pre_tokenizer is not an object");
  const std::string type = p.value("type", std::string());
  if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array()) {
      return InvalidArgument("tokenizer.json: pre_tokenizer Sequence has no pretokenizers array");
    }
    for (const json& s : p["pretokenizers"]) ZAYA_RETURN_IF_ERROR(ParsePreTokenizer(s));
    return Status::Ok();
  }
  if (type == "Split") {
    if (p.value("invert", false)) {
      return Unimplemented("tokenizer.json: pre_tokenizer Split with invert=true is unsupported");
    }
    PreStep step;
    ZAYA_ASSIGN_OR_RETURN(step.behavior, ParseBehavior(p.value("behavior", json())));
    const json& pat = p.value("pattern", json());
    if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      step.kind = PreStep::Kind::kSplitString;
      step.pattern = pat["String"].get<std::string>();
      if (step.pattern.empty()) {
        return InvalidArgument("tokenizer.json: pre_tokenizer Split has an empty pattern");
      }
    } else if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      const std::string re = pat["Regex"].get<std::string>();
      auto kind = ti::RecognizeRegex(re);
      if (!kind) {
        return Unimplemented("tokenizer.json: pre_tokenizer Split regex " + pat["Regex"].dump() +
                             " is unsupported (only the GPT-2, Llama 3 and Qwen 2 patterns)");
      }
      step.kind = PreStep::Kind::kSplitRegex;
      step.regex = *kind;
    } else {
      return InvalidArgument("tokenizer.json: pre_tokenizer Split has no String/Regex pattern");
    }
    pre_tokenizers.push_back(std::move(step));
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    PreStep step;
    step.kind = PreStep::Kind::kByteLevel;
    step.add_prefix_space = p.value("add_prefix_space", false);
    step.use_regex = p.value("use_regex", true);
    pre_tokenizers.push_back(step);
    return Status::Ok();
  }
  return Unimplemented("tokenizer.json: pre_tokenizer type \"" + type + "\" is unsupported");
}

Status Tokenizer::Impl::ParsePostProcessor(const json& p) {
  if (p.is_null()) return Status::Ok();
  if (!p.is_object()) return InvalidArgument("tokenizer.json: post_processor is not an object");
  const std::string type = p.value("type", std::string());
  if (type == "Sequence") {
    if (!p.contains("processors") || !p["processors"].is_array()) {
      return InvalidArgument("tokenizer.json: post_processor Sequence has no processors array");
    }
    for (const json& s : p["processors"]) ZAYA_RETURN_IF_ERROR(ParsePostProcessor(s));
    return Status::Ok();
  }
  if (type == "ByteLevel") return Status::Ok();  // offsets only; ids are unchanged
  if (type == "TemplateProcessing") {
    const json& single = p.value("single", json());
    if (!single.is_array()) {
      return InvalidArgument("tokenizer.json: TemplateProcessing has no \"single\" array");
    }
    const json& specials = p.value("special_tokens", json::object());
    bool seen_sequence = false;
    for (const json& item : single) {
      if (item.is_object() && item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.is_object() || !item.contains("SpecialToken") ||
          !item["SpecialToken"].is_object()) {
        return InvalidArgument("tokenizer.json: TemplateProcessing item " + item.dump() +
                               " is neither Sequence nor SpecialToken");
      }
      const std::string name = item["SpecialToken"].value("id", std::string());
      std::vector<int32_t> ids;
      if (specials.is_object() && specials.contains(name) && specials[name].is_object() &&
          specials[name].contains("ids") && specials[name]["ids"].is_array()) {
        for (const json& i : specials[name]["ids"]) {
          if (!i.is_number_integer()) {
            return InvalidArgument("tokenizer.json: TemplateProcessing special token ids of " +
                                   name + " are not integers");
          }
          // Read wide and checked: get<int32_t>() wrapped 4294967298 to 2, a valid id.
          const int64_t id = i.get<int64_t>();
          if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
            return InvalidArgument("tokenizer.json: TemplateProcessing special token \"" + name +
                                   "\" has id " + i.dump() + ", which is out of range");
          }
          ids.push_back(static_cast<int32_t>(id));
        }
      } else {
        auto it = token_to_id.find(name);
        if (it == token_to_id.end()) {
          return InvalidArgument("tokenizer.json: TemplateProcessing special token \"" + name +
                                 "\" is unknown");
        }
        ids.push_back(it->second);
      }
      auto& dst = seen_sequence ? suffix_ids : prefix_ids;
      dst.insert(dst.end(), ids.begin(), ids.end());
    }
    return Status::Ok();
  }
  return Unimplemented("tokenizer.json: post_processor type \"" + type + "\" is unsupported");
}

Status Tokenizer::Impl::ParseDecoder(const json& d, bool* after_fuse) {
  if (d.is_null()) return Status::Ok();
  if (!d.is_object()) return InvalidArgument("tokenizer.json: decoder is not an object");
  const std::string type = d.value("type", std::string());
  if (type == "Sequence") {
    if (!d.contains("decoders") || !d["decoders"].is_array()) {
      return InvalidArgument("tokenizer.json: decoder Sequence has no decoders array");
    }
    for (const json& s : d["decoders"]) ZAYA_RETURN_IF_ERROR(ParseDecoder(s, after_fuse));
    return Status::Ok();
  }
  if (type == "Fuse") {
    *after_fuse = true;
    return Status::Ok();
  }
  // Every other supported decoder works token by token; after Fuse it would see the whole text.
  if (*after_fuse) {
    return Unimplemented("tokenizer.json: decoder \"" + type + "\" after Fuse is unsupported");
  }
  if (type == "Replace") {
    const json& p = d.value("pattern", json());
    if (!p.is_object() || !p.contains("String") || !p["String"].is_string()) {
      return Unimplemented("tokenizer.json: decoder Replace with pattern " + p.dump() +
                           " is unsupported (only {\"String\": ...} patterns)");
    }
    DecStep s{DecStep::Kind::kReplace, p["String"].get<std::string>(),
              d.value("content", std::string())};
    decoders.push_back(std::move(s));
    return Status::Ok();
  }
  if (type == "ByteFallback") {
    decoders.push_back({DecStep::Kind::kByteFallback, "", ""});
    return Status::Ok();
  }
  if (type == "ByteLevel") {
    decoders.push_back({DecStep::Kind::kByteLevel, "", ""});
    return Status::Ok();
  }
  if (type == "Strip") {
    DecStep s{DecStep::Kind::kStrip, d.value("content", std::string(" ")), ""};
    s.start = d.value("start", 0);
    s.stop = d.value("stop", 0);
    decoders.push_back(std::move(s));
    return Status::Ok();
  }
  return Unimplemented("tokenizer.json: decoder type \"" + type + "\" is unsupported");
}

void Tokenizer::Impl::ParseConfig(const json& c) {
  if (!c.is_object()) return;
  if (c.contains("bos_token")) {
    if (auto t = ConfigToken(c["bos_token"])) {
      if (auto it = token_to_id.find(*t); it != token_to_id.end()) bos = it->second;
    }
  }
  if (c.contains("eos_token")) {
    if (auto t = ConfigToken(c["eos_token"])) {
      if (auto it = token_to_id.find(*t); it != token_to_id.end()) eos.push_back(it->second);
    }
  }
  if (c.contains("additional_special_tokens") && c["additional_special_tokens"].is_array()) {
    for (const json& t : c["additional_special_tokens"]) {
      if (auto s = ConfigToken(t)) {
        if (auto it = token_to_id.find(*s); it != token_to_id.end()) special[it->second] = true;
      }
    }
  }
  if (c.contains("clean_up_tokenization_spaces") &&
      c["clean_up_tokenization_spaces"].is_boolean()) {
    clean_up_spaces = c["clean_up_tokenization_spaces"].get<bool>();
  }
}

void Tokenizer::Impl::ParseGenerationConfig(const json& c) {
  if (!c.is_object() || !c.contains("eos_token_id")) return;
  auto add = [&](const json& v) {
    if (!v.is_number_integer()) return;
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= vocab_size()) return;
    if (std::find(eos.begin(), eos.end(), id) == eos.end()) eos.push_back(static_cast<int32_t>(id));
  };
  const json& e = c["eos_token_id"];
  if (e.is_array()) {
    for (const json& v : e) add(v);
  } else {
    add(e);
  }
}

Status Tokenizer::Impl::Bpe(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return Status::Ok();
  if (ignore_merges) {
    if (auto it = token_to_id.find(std::string(word)); it != token_to_id.end()) {
      out->push_back(it->second);
      return Status::Ok();
    }
  }
  // Symbols start as code points; id -1 marks a character that is not in the vocabulary (it can
  // never take part in a merge, since every merge operand is in the vocabulary).
  struct Sym {
    int32_t id;
    int32_t prev, next;
    uint32_t begin, len;  // byte span in `word` (used for fallback)
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    size_t len = 0;
    const char32_t cp = utf8::DecodeOne(word, i, &len);
    auto it = char_to_id.find(cp);
    const int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({it == char_to_id.end() ? -1 : it->second, n - 1, n + 1,
                    static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
    i += len;
  }
  syms.back().next = -1;

  struct Cand {
    int32_t rank, pos, left, right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto push = [&](int32_t pos) {
    const int32_t nx = syms[pos].next;
    if (nx < 0 || syms[pos].id < 0 || syms[nx].id < 0) return;
    auto it = merges.find((uint64_t(uint32_t(syms[pos].id)) << 32) | uint32_t(syms[nx].id));
    if (it != merges.end()) queue.push({it->second.rank, pos, syms[pos].id, syms[nx].id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
  while (!queue.empty()) {
    const Cand c = queue.top();
    queue.pop();
    Sym& left = syms[c.pos];
    // Stale entries: the left symbol or its right neighbour changed since this was queued.
    if (left.id != c.left || left.next < 0 || syms[left.next].id != c.right) continue;
    Sym& right = syms[left.next];
    left.id = merges.at((uint64_t(uint32_t(c.left)) << 32) | uint32_t(c.right)).id;
    left.len += right.len;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = c.pos;
    right.id = -2;  // dead
    if (left.prev >= 0) push(left.prev);
    push(c.pos);
  }

  bool last_unk = false;
  for (int32_t i = 0; i >= 0 && i < static_cast<int32_t>(syms.size()); i = syms[i].next) {
    const Sym& s = syms[i];
    if (s.id >= 0) {
      out->push_back(s.id);
      last_unk = false;
      continue;
    }
    const std::string_view piece = word.substr(s.begin, s.len);
    bool done = false;
    if (byte_fallback) {
      bool all = true;
      for (char ch : piece) all = all && byte_ids[static_cast<unsigned char>(ch)] >= 0;
      if (all) {
        for (char ch : piece) out->push_back(byte_ids[static_cast<unsigned char>(ch)]);
        done = true;
        last_unk = false;
      }
    }
    if (!done) {
      if (!unk_id) {
        return InvalidArgument("text contains \"" + std::string(piece) +
                               "\", which the vocabulary cannot represent (no byte fallback and "
                               "no unk_token)");
      }
      if (!(fuse_unk && last_unk)) out->push_back(*unk_id);
      last_unk = true;
    }
  }
  return Status::Ok();
}

Status Tokenizer::Impl::EncodeSection(std::string_view text, std::vector<int32_t>* out) const {
  std::string normalized(text);
  for (const NormStep& n : normalizers) {
    if (n.kind == NormStep::Kind::kReplace) {
      normalized = ReplaceAll(normalized, n.from, n.to);
    } else if (!normalized.empty()) {
      normalized = n.to + normalized;
    }
  }
  if (normalized.empty()) return Status::Ok();
  std::vector<std::string> words{std::move(normalized)};
  for (const PreStep& p : pre_tokenizers) {
    std::vector<std::string> next;
    for (std::string& w : words) {
      switch (p.kind) {
        case PreStep::Kind::kSplitString: {
          std::vector<std::pair<size_t, size_t>> m;
          for (size_t i = w.find(p.pattern); i != std::string::npos;
               i = w.find(p.pattern, i + p.pattern.size())) {
            m.emplace_back(i, i + p.pattern.size());
          }
          ApplySplit(w, m, p.behavior, &next);
          break;
        }
        case PreStep::Kind::kSplitRegex:
          ApplySplit(w, ti::FindMatches(p.regex, w), p.behavior, &next);
          break;
        case PreStep::Kind::kByteLevel: {
          if (p.add_prefix_space && !w.empty() && w[0] != ' ') w.insert(w.begin(), ' ');
          std::vector<std::string> pieces;
          if (p.use_regex) {
            ApplySplit(w, ti::FindMatches(ti::RegexKind::kGpt2, w), SplitBehavior::kIsolated,
                       &pieces);
          } else {
            pieces.push_back(w);
          }
          for (const std::string& piece : pieces) {
            std::string mapped;
            mapped.reserve(piece.size() * 2);
            for (char ch : piece)
              utf8::Append(&mapped, ti::ByteToUnicode(static_cast<unsigned char>(ch)));
            next.push_back(std::move(mapped));
          }
          break;
        }
      }
    }
    words = std::move(next);
  }
  for (const std::string& w : words) ZAYA_RETURN_IF_ERROR(Bpe(w, out));
  return Status::Ok();
}

Result<Tokenizer> Tokenizer::FromJson(std::string_view tokenizer_json,
                                      std::string_view config_json) {
  return Build(tokenizer_json, config_json, {});
}

Result<Tokenizer> Tokenizer::Build(std::string_view tokenizer_json, std::string_view config_json,
                                   std::string_view generation_json) {
  auto impl = std::make_shared<Impl>();
  // Real tokenizer files nest a few levels (a Sequence of normalizers holding patterns). Far
  // deeper ones would overflow the stack in the recursive copies below (base/json_depth.h).
  constexpr int kMaxDepth = 64;
  for (const auto& [name, text] : {std::pair{"tokenizer.json", tokenizer_json},
                                   std::pair{"tokenizer_config.json", config_json},
                                   std::pair{"generation_config.json", generation_json}}) {
    if (JsonNestingDepth(text, kMaxDepth) > kMaxDepth) {
      return InvalidArgument(std::string(name) + " nests arrays and objects more than " +
                             std::to_string(kMaxDepth) +
                             " levels deep; it is not a tokenizer file this engine can read");
    }
  }
  try {
    const json t = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
    if (t.is_discarded() || !t.is_object()) {
      return InvalidArgument(
          "tokenizer.json is not a JSON object; check that the file is complete");
    }
    ZAYA_RETURN_IF_ERROR(impl->ParseModel(t.value("model", json())));
    // Added tokens extend (or override) the model vocabulary.
    if (t.contains("added_tokens")) {
      if (!t["added_tokens"].is_array()) {
        return InvalidArgument("tokenizer.json: added_tokens is not an array");
      }
      for (const json& a : t["added_tokens"]) {
        if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
            !a.contains("content") || !a["content"].is_string()) {
          return InvalidArgument("tokenizer.json: added token " + a.dump().substr(0, 200) +
                                 " needs an integer id and a string content");
        }
        const int64_t id = a["id"].get<int64_t>();
        if (id < 0 || id > (1 << 24)) {
          return InvalidArgument("tokenizer.json: added token id " + std::to_string(id) +
                                 " is out of range");
        }
        AddedToken tok{a["content"].get<std::string>(), static_cast<int32_t>(id),
                       a.value("special", false), a.value("lstrip", false),
                       a.value("rstrip", false)};
        if (tok.content.empty()) continue;
        if (id >= impl->vocab_size()) impl->id_to_token.resize(id + 1);
        impl->id_to_token[id] = tok.content;
        impl->token_to_id[tok.content] = tok.id;
        impl->added.push_back(std::move(tok));
      }
    }
    const int32_t n = impl->vocab_size();
    impl->added_index.assign(n, -1);
    impl->special.assign(n, false);
    for (size_t i = 0; i < impl->added.size(); ++i) {
      const AddedToken& a = impl->added[i];
      impl->added_index[a.id] = static_cast<int32_t>(i);
      impl->special[a.id] = a.special;
      impl->trie.Insert(a.content, a.id);
    }
    impl->byte_ids.fill(-1);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      if (auto it = impl->token_to_id.find(name); it != impl->token_to_id.end()) {
        impl->byte_ids[b] = it->second;
      }
    }
    for (int32_t id = 0; id < n; ++id) {
      const std::string& s = impl->id_to_token[id];
      if (s.empty()) continue;
      size_t len = 0;
      const char32_t cp = utf8::DecodeOne(s, 0, &len);
      if (len == s.size() && (cp != utf8::kReplacement || s == "\xEF\xBF\xBD")) {
        impl->char_to_id.emplace(cp, id);
      }
    }
    ZAYA_RETURN_IF_ERROR(impl->ParseNormalizer(t.value("normalizer", json())));
    ZAYA_RETURN_IF_ERROR(impl->ParsePreTokenizer(t.value("pre_tokenizer", json())));
    ZAYA_RETURN_IF_ERROR(impl->ParsePostProcessor(t.value("post_processor", json())));
    bool after_fuse = false;
    ZAYA_RETURN_IF_ERROR(impl->ParseDecoder(t.value("decoder", json()), &after_fuse));
    for (int32_t id : impl->prefix_ids) {
      if (id < 0 || id >= n)
        return InvalidArgument("tokenizer.json: post_processor id " + std::to_string(id) +
                               " is out of range");
    }
    for (int32_t id : impl->suffix_ids) {
      if (id < 0 || id >= n)
        return InvalidArgument("tokenizer.json: post_processor id " + std::to_string(id) +
                               " is out of range");
    }

    // Decoded bytes of every token: all supported decoders work token by token.
    impl->token_bytes.resize(n);
    for (int32_t id = 0; id < n; ++id) {
      std::string s = impl->id_to_token[id];
      for (const DecStep& d : impl->decoders) {
        switch (d.kind) {
          case DecStep::Kind::kReplace:
            s = ReplaceAll(s, d.from, d.to);
            break;
          case DecStep::Kind::kByteFallback:
            if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' &&
                std::isxdigit(static_cast<unsigned char>(s[3])) &&
                std::isxdigit(static_cast<unsigned char>(s[4]))) {
              s = std::string(1, static_cast<char>(std::stoi(s.substr(3, 2), nullptr, 16)));
            }
            break;
          case DecStep::Kind::kStrip: {
            const std::string& c = d.from;
            for (int k = 0; k < d.start && !c.empty() && s.compare(0, c.size(), c) == 0; ++k) {
              s.erase(0, c.size());
            }
            for (int k = 0; k < d.stop && !c.empty() && s.size() >= c.size() &&
                            s.compare(s.size() - c.size(), c.size(), c) == 0;
                 ++k) {
              s.erase(s.size() - c.size());
            }
            break;
          }
          case DecStep::Kind::kByteLevel: {
            std::string bytes;
            bool ok = true;
            for (size_t i = 0; i < s.size() && ok;) {
              size_t len = 0;
              auto b = ti::UnicodeToByte(utf8::DecodeOne(s, i, &len));
              if (b) {
                bytes.push_back(static_cast<char>(*b));
              } else {
                ok = false;
              }
              i += len;
            }
            if (ok) s = std::move(bytes);
            break;
          }
        }
      }
      impl->token_bytes[id] = std::move(s);
    }

    if (!config_json.empty()) {
      const json c = json::parse(config_json, nullptr, false);
      if (c.is_discarded() || !c.is_object()) {
        return InvalidArgument("tokenizer_config.json is not a JSON object");
      }
      impl->ParseConfig(c);
    }
    if (!generation_json.empty()) {
      const json g = json::parse(generation_json, nullptr, false);
      if (g.is_discarded()) return InvalidArgument("generation_config.json is not valid JSON");
      impl->ParseGenerationConfig(g);
    }
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("tokenizer.json: unexpected value type: ") + e.what());
  }
  return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::Load(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::path dir = path, file = path;
  if (std::filesystem::is_directory(path, ec)) {
    file = path / "tokenizer.json";
  } else {
    dir = path.parent_path();
  }
  Status st;
  const std::string tok = ReadFile(file, &st);
  if (!st.ok()) {
    return NotFound("tokenizer: cannot open " + file.string() +
                    "; pass a model folder that holds tokenizer.json, or the file itself");
  }
  std::string config;
  if (std::filesystem::exists(dir / "tokenizer_config.json", ec)) {
    config = ReadFile(dir / "tokenizer_config.json", &st);
    ZAYA_RETURN_IF_ERROR(st);
  }
  std::string generation;
  if (std::filesystem::exists(dir / "generation_config.json", ec)) {
    generation = ReadFile(dir / "generation_config.json", &st);
    ZAYA_RETURN_IF_ERROR(st);
  }
  if (IsGitLfsPointer(tok)) return DataLoss(file.string() + ": " + GitLfsPointerAdvice(file));
  auto t = Build(tok, config, generation);
  if (!t.ok()) return t.status().WithContext(file.string());
  return t;
}

Result<std::vector<int32_t>> Tokenizer::Encode(std::string_view raw, AddSpecial add_special) const {
  const Impl& im = *impl_;
  std::string sanitized;
  std::string_view text = raw;
  if (!utf8::IsValid(raw)) {
    sanitized = utf8::Sanitize(raw);
    text = sanitized;
  }
  // Split on added tokens: sections are either an added-token id or a span of plain text.
  struct Section {
    int32_t id;  // -1 for text
    std::string_view text;
  };
  std::vector<Section> sections;
  size_t start = 0;
  if (!im.trie.empty()) {
    for (size_t i = 0; i < text.size();) {
      auto [id, len] = im.trie.Match(text, i);
      if (id < 0) {
        ++i;
        continue;
      }
      if (i > start) sections.push_back({-1, text.substr(start, i - start)});
      sections.push_back({id, text.substr(i, len)});
      i += len;
      start = i;
    }
  }
  if (start < text.size()) sections.push_back({-1, text.substr(start)});
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].id < 0) continue;
    const AddedToken& a = im.added[im.added_index[sections[i].id]];
    if (a.lstrip && i > 0 && sections[i - 1].id < 0)
      sections[i - 1].text = TrimEnd(sections[i - 1].text);
    if (a.rstrip && i + 1 < sections.size() && sections[i + 1].id < 0) {
      sections[i + 1].text = TrimStart(sections[i + 1].text);
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special != AddSpecial::kNone) {
    ids.insert(ids.end(), im.prefix_ids.begin(), im.prefix_ids.end());
  }
  for (const Section& s : sections) {
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else if (!s.text.empty()) {
      ZAYA_RETURN_IF_ERROR(im.EncodeSection(s.text, &ids));
    }
  }
  if (add_special == AddSpecial::kAll) {
    ids.insert(ids.end(), im.suffix_ids.begin(), im.suffix_ids.end());
  }
  return ids;
}

namespace {
// transformers' clean_up_tokenization: drops the space a word-level tokenizer put before
// punctuation and English contractions.
std::string CleanUpTokenization(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) s = ReplaceAll(s, from, to);
  return s;
}
}  // namespace

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= im.vocab_size()) continue;
    if (skip_special_tokens && im.special[id]) continue;
    bytes += im.token_bytes[id];
  }
  std::string text = utf8::IsValid(bytes) ? std::move(bytes) : utf8::Sanitize(bytes);
  if (im.clean_up_spaces) text = CleanUpTokenization(std::move(text));
  return text;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->token_to_id.find(std::string(token));
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= impl_->vocab_size()) return {};
  return impl_->id_to_token[id];
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size() && impl_->special[id];
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos; }

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= impl_->vocab_size()) return {};
  return impl_->token_bytes[id];
}

Tokenizer::StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string Tokenizer::StreamDecoder::Push(int32_t id) {
  if (skip_special_ && tokenizer_.IsSpecial(id)) return {};
  pending_ += tokenizer_.TokenBytes(id);
  const size_t keep = utf8::IncompleteTailLength(pending_);
  std::string out = utf8::Sanitize(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string Tokenizer::StreamDecoder::Flush() {
  std::string out = utf8::Sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace zaya
