// When a sequence stops, and which generated text is safe to stream.
//
// Stop conditions, checked after every sampled token in this order:
//   1. the token is one of the stop token ids (e.g. <eos>, <end_of_turn>); its text is NOT emitted;
//   2. the text generated so far contains a stop string; the text from the first match on is NOT
//      emitted. A stop string may span several tokens;
//   3. max_tokens tokens have been generated (the last one's text is emitted).
// Hold-back: while the end of the text could be the beginning of a stop string, those bytes are held
// back (not returned by OnToken) so a client never sees a stop string, not even partly. They are
// released once they can no longer start a match, or by Flush() / a stop token / max_tokens.
// Pieces are the detokenizer's per-token text; the checker never splits them except at a stop
// string's first byte, so held-back text never cuts a UTF-8 sequence when the pieces are valid UTF-8.
//
// Thread-compatible: one StopChecker per sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace zaya {

enum class FinishReason { kNone, kStopToken, kStopString, kMaxTokens };

// Protocol names: "" (kNone), "stop" (token or string), "length" (max tokens).
std::string_view FinishReasonName(FinishReason reason);

struct StopUpdate {
  std::string text;  // newly releasable text (possibly empty)
  FinishReason finish = FinishReason::kNone;
  int32_t stop_token = -1;  // kStopToken: the id that stopped
  std::string stop_string;  // kStopString: the stop string that matched
};

class StopChecker {
 public:
  // Errors: an empty stop string, max_tokens < 1.
  static Result<StopChecker> Create(std::vector<int32_t> stop_tokens,
                                    std::vector<std::string> stop_strings, int max_tokens);

  // Feeds one sampled token and its decoded text. After a finish, further calls return an empty
  // update with the same finish reason (the caller should not make them).
  StopUpdate OnToken(int32_t token, std::string_view piece);

  // Generation ended for an outside reason (cancel, context full): returns the held-back text.
  std::string Flush();

  // The end of a generation that finished on a stop token or max_tokens (or for an outside
  // reason): the held-back text, then `decoder_tail`, the bytes the token decoder still held (an
  // incomplete last character as U+FFFD), which come after every piece fed so far. Fed through
  // OnToken after the finish, that tail was dropped. After a stop string nothing follows it.
  std::string FinishWith(std::string_view decoder_tail);

  // All text so far; after a stop string, the text before it. Includes held-back bytes.
  const std::string& text() const { return text_; }
  size_t held_bytes() const { return text_.size() - emitted_; }
  int tokens() const { return tokens_; }
  FinishReason finish() const { return finish_; }

 private:
  StopChecker(std::vector<int32_t> stop_tokens, std::vector<std::string> stop_strings,
              int max_tokens);

  // Bytes at the end of text_ that are a proper prefix of some stop string.
  size_t PartialMatchLength() const;
  std::string Release(size_t end);

  std::vector<int32_t> stop_tokens_;
  std::vector<std::string> stop_strings_;
  size_t max_stop_len_ = 0;
  int max_tokens_;
  int tokens_ = 0;
  std::string text_;
  size_t emitted_ = 0;  // text_[0, emitted_) has been returned to the caller
  FinishReason finish_ = FinishReason::kNone;
};

}  // namespace zaya
