// Reasoning models write their thinking between <think> and </think> before
// the answer (DeepSeek-R1 and its distills, QwQ, Qwen3). With a reasoning
// parser the gateway returns that part as the message's
// `reasoning_content` (streamed as delta.reasoning_content) and only the
// rest as `content`, where tool calls are looked for, as vLLM's
// --reasoning-parser and llama.cpp's --reasoning-format do.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace ferry {

enum class ReasoningFormat {
  kNone,
  // The thinking opens the answer; <think> may be missing (the template
  // wrote it into the prompt) and everything up to </think> is reasoning.
  kDeepSeekR1,
  // Reasoning only when the answer opens with <think>.
  kQwen3,
};

// "none", "deepseek_r1" or "qwen3".
absl::StatusOr<ReasoningFormat> ParseReasoningFormat(std::string_view name);

// What the engine is told of a format's thinking (SamplingParams.reasoning):
// the text that opens it (empty: the answer opens inside it, the template
// having written the opening) and the text that ends it.
struct ReasoningTags {
  std::string_view start, end;
};
ReasoningTags TagsOf(ReasoningFormat format);

struct ReasoningSplit {
  std::string reasoning;
  std::string content;
};

// The answer `text` split into reasoning and content. Unless `final`, a
// tail that may be the start of a tag is left out of both, so that as the
// text grows each part only grows.
ReasoningSplit SplitReasoning(ReasoningFormat format, std::string_view text, bool final);

// The same split of an answer that arrives piece by piece, in time linear
// in its length: each Append looks at the new text only.
class ReasoningStream {
 public:
  explicit ReasoningStream(ReasoningFormat format) : format_(format) {}
  // `final`: the answer is complete (a held-back tail is released).
  void Append(std::string_view text, bool final);
  // Valid until the next Append; each only grows from one call to the next.
  std::string_view reasoning() const;
  std::string_view content() const;
  // Inside the thinking: its opening seen (or implied) and its end not yet.
  bool thinking() const { return state_ == State::kThinking; }

 private:
  enum class State { kOpening, kThinking, kAnswer };
  ReasoningFormat format_;
  State state_ = State::kOpening;
  std::string raw_;
  size_t reasoning_begin_ = 0, reasoning_end_ = 0;
  size_t content_begin_ = 0, content_end_ = 0;
  size_t search_from_ = 0;  // no </think> starts before this
};

}  // namespace ferry
