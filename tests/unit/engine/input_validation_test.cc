// ValidateGenerateInput: a client's request and a peer's resume state get
// an InvalidArgument naming what is wrong, and a good one passes.
#include "engine/input_validation.h"

#include "engine/sampler.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

InputLimits Limits() {
  InputLimits l;
  l.vocab_size = 100;
  l.max_model_len = 64;
  l.block_size = 16;
  l.num_kv_blocks = 8;
  return l;
}

GenerateInput Good() {
  GenerateInput in;
  in.request_id = "r";
  in.prompt_ids = {1, 2, 3, 4};
  in.params.max_tokens = 8;
  return in;
}

GenerateInput Resumed() {
  GenerateInput in = Good();
  ResumeState r;
  r.output_ids = {5, 6};
  r.rng_state = Rng(7).SaveState();
  r.cached_prompt_tokens = 4;
  in.resume = r;
  return in;
}

void ExpectRejected(const GenerateInput& in, const std::string& mentions) {
  absl::Status s = ValidateGenerateInput(in, Limits());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(mentions), std::string::npos) << s;
}

TEST(InputValidationTest, GoodRequestsAndResumeStatesPass) {
  EXPECT_TRUE(ValidateGenerateInput(Good(), Limits()).ok());
  EXPECT_TRUE(ValidateGenerateInput(Resumed(), Limits()).ok());
  GenerateInput no_rng = Resumed();
  no_rng.resume->rng_state.clear();  // reseeded and replayed
  EXPECT_TRUE(ValidateGenerateInput(no_rng, Limits()).ok());
}

TEST(InputValidationTest, ClientErrorsNameTheField) {
  GenerateInput in = Good();
  in.request_id.clear();
  ExpectRejected(in, "request id");
  in = Good();
  in.prompt_ids.clear();
  ExpectRejected(in, "prompt is empty");
  in = Good();
  in.prompt_ids[2] = 100;
  ExpectRejected(in, "prompt token id 100");
  in = Good();
  in.params.max_tokens = 61;
  ExpectRejected(in, "maximum context length is 64");
  in = Good();
  in.params.temperature = -1;
  ExpectRejected(in, "temperature");
  InputLimits small = Limits();
  small.num_kv_blocks = 0;  // not checked
  in = Good();
  EXPECT_TRUE(ValidateGenerateInput(in, small).ok());
  small.num_kv_blocks = 1;
  in.params.max_tokens = 20;  // 24 tokens: two blocks
  EXPECT_EQ(ValidateGenerateInput(in, small).code(), absl::StatusCode::kInvalidArgument);
}

TEST(InputValidationTest, APeersResumeStateIsCheckedFieldByField) {
  GenerateInput in = Resumed();
  in.resume->output_ids.push_back(-3);
  ExpectRejected(in, "output token id -3");
  in = Resumed();
  in.resume->output_ids.assign(8, 1);
  ExpectRejected(in, "already reached max_tokens");
  in = Resumed();
  in.resume->sample_index = -1;
  ExpectRejected(in, "sample index");
  in = Resumed();
  in.resume->sample_index = 64;
  ExpectRejected(in, "sample index");
  in = Resumed();
  in.resume->emitted_text_bytes = -5;
  ExpectRejected(in, "emitted text");
  in = Resumed();
  in.resume->cached_prompt_tokens = 5;
  ExpectRejected(in, "5 cached tokens of a 4-token prompt");
  in = Resumed();
  in.resume->cached_prompt_tokens = -1;
  ExpectRejected(in, "cached tokens");
  in = Resumed();
  in.resume->rng_state = "short";
  ExpectRejected(in, "sampler state");
  in = Resumed();
  in.resume->rng_state = std::string(32, '\0');
  ExpectRejected(in, "sampler state");
}

}  // namespace
}  // namespace ferry
