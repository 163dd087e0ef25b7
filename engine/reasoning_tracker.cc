#include "engine/reasoning_tracker.h"

#include <algorithm>
#include <utility>

namespace ferry {

ReasoningTracker::ReasoningTracker(const SamplingParams::Reasoning& params,
                                   std::vector<int32_t> start_ids, std::vector<int32_t> end_ids,
                                   bool by_tokens)
    : params_(params),
      start_ids_(std::move(start_ids)),
      end_ids_(std::move(end_ids)),
      by_tokens_(by_tokens && !start_ids_.empty()),
      phase_(params.start.empty() ? Phase::kThinking : Phase::kOpening) {
  if (phase_ == Phase::kThinking) MaybeForce();
}

void ReasoningTracker::Add(int32_t id, std::string_view bytes) {
  const int index = tokens_++;
  switch (phase_) {
    case Phase::kOpening: {
      if (by_tokens_) {
        if (id != start_ids_[static_cast<size_t>(index)]) {
          phase_ = Phase::kAnswer;  // answer from the first byte
        } else if (static_cast<size_t>(tokens_) == start_ids_.size()) {
          BeginThinking(index, bytes.size(), {});
        }
        return;
      }
      // Spaces before the opening are the model's, not an answer.
      if (opening_.empty()) {
        const size_t lead = bytes.find_first_not_of(" \t\r\n");
        if (lead == std::string_view::npos) return;
        bytes.remove_prefix(lead);
      }
      opening_.append(bytes);
      if (opening_.starts_with(params_.start)) {
        const std::string rest = opening_.substr(params_.start.size());
        opening_.clear();
        BeginThinking(index, bytes.size(), rest);
      } else if (!std::string_view(params_.start).starts_with(opening_)) {
        phase_ = Phase::kAnswer;
        opening_.clear();
      }
      return;
    }
    case Phase::kThinking: {
      ++thinking_tokens_;
      window_.append(bytes);
      const size_t at = window_.find(params_.end);
      if (at != std::string::npos) {
        EndThinking(index, bytes.size(), window_.size() - at - params_.end.size());
        return;
      }
      // Keep enough of the tail to find `end` and to tell a cut character.
      const size_t keep = std::max<size_t>(params_.end.size(), 4);
      if (window_.size() > keep) window_.erase(0, window_.size() - keep);
      if (force_pos_ >= 0) {
        ++force_pos_;
        if (static_cast<size_t>(force_pos_) >= end_ids_.size())
          force_pos_ = -2;  // written; gave up
      } else {
        MaybeForce();
      }
      return;
    }
    case Phase::kAnswer:
      return;
  }
}

void ReasoningTracker::BeginThinking(int index, size_t token_size, std::string_view rest) {
  phase_ = Phase::kThinking;
  thinking_tokens_ = 0;
  // The opening token may carry thinking bytes too, even its end.
  window_.assign(rest);
  if (const size_t at = window_.find(params_.end); at != std::string::npos) {
    EndThinking(index, token_size, window_.size() - at - params_.end.size());
    return;
  }
  MaybeForce();
}

void ReasoningTracker::EndThinking(int index, size_t token_size, size_t after) {
  // `end` finishes inside token `index`, `after` bytes before its end.
  phase_ = Phase::kAnswer;
  answer_token_ = index;
  answer_skip_ = token_size - after;
  if (after == 0) {
    answer_token_ = index + 1;
    answer_skip_ = 0;
  }
  window_.clear();
  force_pos_ = -1;
}

void ReasoningTracker::MaybeForce() {
  if (force_pos_ != -1 || params_.budget_tokens < 0 || end_ids_.empty()) return;
  if (thinking_tokens_ < params_.budget_tokens || InCharacter()) return;
  force_pos_ = 0;
}

bool ReasoningTracker::InCharacter() const {
  // Walk back over continuation bytes to the lead byte of the last
  // character and check that all its bytes are there.
  size_t i = window_.size(), cont = 0;
  while (i > 0 && (static_cast<unsigned char>(window_[i - 1]) & 0xC0) == 0x80 && cont < 4) {
    --i;
    ++cont;
  }
  if (i == 0) return false;
  const auto lead = static_cast<unsigned char>(window_[i - 1]);
  const size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
  return cont < need;
}

int32_t ReasoningTracker::Forced() const {
  if (phase_ == Phase::kThinking && force_pos_ >= 0 &&
      static_cast<size_t>(force_pos_) < end_ids_.size()) {
    return end_ids_[static_cast<size_t>(force_pos_)];
  }
  if (phase_ == Phase::kOpening && by_tokens_ && tokens_ > 0 &&
      static_cast<size_t>(tokens_) < start_ids_.size()) {
    return start_ids_[static_cast<size_t>(tokens_)];
  }
  return -1;
}

int32_t ReasoningTracker::OpeningToken() const {
  return phase_ == Phase::kOpening && by_tokens_ && tokens_ == 0 ? start_ids_[0] : -1;
}

}  // namespace ferry
