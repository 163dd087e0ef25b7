// Follows a reasoning model's output through its thinking: where the
// thinking opens and ends (SamplingParams::Reasoning), so that structured
// output applies only to the answer after it, and which token the engine
// must write when the thinking reaches its budget.
//
// It reads token bytes only, so it can be rebuilt from the output tokens
// (a resumed or migrated sample catches up by replaying them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampling_params.h"

namespace ferry {

class ReasoningTracker {
 public:
  enum class Phase {
    kOpening,   // the output may still open with `start`
    kThinking,  // inside the thinking: `end` not yet written
    kAnswer,    // after the thinking, or there was none
  };

  // `start_ids` / `end_ids`: `start` and `end` as tokens (what is written
  // when forced). With `by_tokens` the opening is decided on tokens: the
  // output thinks only when it begins with exactly `start_ids` (the engine
  // offers only those besides the grammar's, so bytes that merely look like
  // `start` stay answer); otherwise on bytes.
  ReasoningTracker(const SamplingParams::Reasoning& params, std::vector<int32_t> start_ids,
                   std::vector<int32_t> end_ids, bool by_tokens);

  // One more output token and its bytes (end-of-sequence tokens are not
  // given).
  void Add(int32_t id, std::string_view bytes);

  Phase phase() const { return phase_; }
  int tokens() const { return tokens_; }
  // kAnswer: the output token where the answer begins and how many of its
  // bytes still belong to the thinking.
  int answer_token() const { return answer_token_; }
  size_t answer_skip() const { return answer_skip_; }
  // Tokens of thinking so far (after `start`).
  int thinking_tokens() const { return thinking_tokens_; }

  // The token the next one must be: the rest of `end` once the budget is
  // spent, or the rest of `start_ids` while the opening follows them
  // (by_tokens); -1 when any may come.
  int32_t Forced() const;
  // kOpening, nothing written yet, by_tokens: the token that would open the
  // thinking (offered beside the grammar's tokens); -1 otherwise.
  int32_t OpeningToken() const;

 private:
  // Token `index` (of `token_size` bytes) completed `start`; `rest`: its
  // bytes after it.
  void BeginThinking(int index, size_t token_size, std::string_view rest);
  void EndThinking(int index, size_t token_size, size_t after);
  void MaybeForce();
  // The thinking's last bytes end inside a UTF-8 character.
  bool InCharacter() const;

  SamplingParams::Reasoning params_;
  std::vector<int32_t> start_ids_, end_ids_;
  bool by_tokens_;
  Phase phase_;
  int tokens_ = 0;
  std::string opening_;  // kOpening: the bytes so far (a prefix of start)
  std::string window_;   // kThinking: the last bytes, enough to find `end` across tokens
  int thinking_tokens_ = 0;
  int force_pos_ = -1;  // index into end_ids_ of the next forced token; -1: not forcing
  int answer_token_ = 0;
  size_t answer_skip_ = 0;
};

}  // namespace ferry
