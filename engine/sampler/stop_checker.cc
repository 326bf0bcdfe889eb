#include "engine/sampler/stop_checker.h"

#include <algorithm>
#include <utility>

namespace zaya {

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kStopToken:
    case FinishReason::kStopString:
      return "stop";
    case FinishReason::kMaxTokens:
      return "length";
  }
  return "";
}

Result<StopChecker> StopChecker::Create(std::vector<int32_t> stop_tokens,
                                        std::vector<std::string> stop_strings, int max_tokens) {
  if (max_tokens < 1) {
    return InvalidArgument("max_tokens = " + std::to_string(max_tokens) +
                           " is not allowed; use at least 1");
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    if (stop_strings[i].empty()) {
      return InvalidArgument("stop[" + std::to_string(i) +
                             "] is an empty string; remove it or give at least one character");
    }
  }
  return StopChecker(std::move(stop_tokens), std::move(stop_strings), max_tokens);
}

StopChecker::StopChecker(std::vector<int32_t> stop_tokens, std::vector<std::string> stop_strings,
                         int max_tokens)
    : stop_tokens_(std::move(stop_tokens)),
      stop_strings_(std::move(stop_strings)),
      max_tokens_(max_tokens) {
  for (const std::string& s : stop_strings_) max_stop_len_ = std::max(max_stop_len_, s.size());
}

std::string StopChecker::Release(size_t end) {
  if (end <= emitted_) return {};
  std::string out = text_.substr(emitted_, end - emitted_);
  emitted_ = end;
  return out;
}

size_t StopChecker::PartialMatchLength() const {
  size_t best = 0;
  const std::string_view text(text_);
  for (const std::string& s : stop_strings_) {
    const size_t longest = std::min(s.size() - 1, text.size());
    for (size_t k = longest; k > best; --k) {
      if (text.substr(text.size() - k) == std::string_view(s).substr(0, k)) {
        best = k;
        break;
      }
    }
  }
  return best;
}

StopUpdate StopChecker::OnToken(int32_t token, std::string_view piece) {
  StopUpdate update;
  if (finish_ != FinishReason::kNone) {
    update.finish = finish_;
    return update;
  }
  ++tokens_;
  if (std::find(stop_tokens_.begin(), stop_tokens_.end(), token) != stop_tokens_.end()) {
    finish_ = update.finish = FinishReason::kStopToken;
    update.stop_token = token;
    update.text = Release(text_.size());
    return update;
  }

  // Only a match that ends inside the new piece is new; it can start up to max_len-1 bytes earlier.
  const size_t old_size = text_.size();
  text_.append(piece);
  if (!stop_strings_.empty() && !piece.empty()) {
    const size_t from = old_size >= max_stop_len_ - 1 ? old_size - (max_stop_len_ - 1) : 0;
    size_t first = std::string::npos;
    size_t which = 0;
    for (size_t i = 0; i < stop_strings_.size(); ++i) {
      const size_t pos = text_.find(stop_strings_[i], from);
      if (pos < first) {
        first = pos;
        which = i;
      }
    }
    if (first != std::string::npos) {
      finish_ = update.finish = FinishReason::kStopString;
      update.stop_string = stop_strings_[which];
      // Held bytes are never before `first`: a held suffix is a proper prefix of a stop string,
      // and any match found now starts at or after the earliest such suffix or in new text.
      update.text = Release(std::max(first, emitted_));
      text_.resize(first);
      emitted_ = std::min(emitted_, text_.size());
      return update;
    }
  }

  if (tokens_ >= max_tokens_) {
    finish_ = update.finish = FinishReason::kMaxTokens;
    update.text = Release(text_.size());
    return update;
  }
  update.text = Release(text_.size() - PartialMatchLength());
  return update;
}

std::string StopChecker::Flush() { return Release(text_.size()); }

std::string StopChecker::FinishWith(std::string_view decoder_tail) {
  std::string out = Flush();
  if (finish_ == FinishReason::kStopString) return out;
  text_.append(decoder_tail);
  emitted_ = text_.size();
  out.append(decoder_tail);
  return out;
}

}  // namespace zaya
