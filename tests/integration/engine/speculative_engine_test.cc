// Speculative decoding by prompt lookup in the engine's step loop on a real
// model (stories260K, whose stories repeat their names and phrases): the
// tokens are exactly those of plain decoding, greedy or seeded, with stop
// strings, max_tokens, penalties and several requests at once, and drafts
// are in fact accepted.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "gtest/gtest.h"
#include "tests/integration/engine/collector.h"
#include "tests/integration/engine/shared_model.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

class SpeculativeEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { FERRY_LOAD_SHARED_MODEL(model_, "models/stories260K.gguf"); }

  std::unique_ptr<Engine> MakeEngine(int draft_tokens) {
    auto e = Engine::Create(model_,
                            EngineOptions{.threads = 2, .speculative_ngram_tokens = draft_tokens});
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  GenerateInput Input(const std::string& id, const std::string& prompt, float temperature,
                      uint64_t seed, int max_tokens) {
    GenerateInput in;
    in.request_id = id;
    in.prompt_ids = model_->tokenizer().Encode(prompt, true, false);
    in.params.temperature = temperature;
    in.params.seed = seed;
    in.params.max_tokens = max_tokens;
    return in;
  }

  // Runs every input at once on `engine`; the results in input order.
  std::vector<Collector::Result> RunAll(Engine& engine, const std::vector<GenerateInput>& inputs) {
    Collector c;
    for (const GenerateInput& in : inputs) {
      absl::Status s = engine.Submit(in, c.Sink());
      EXPECT_TRUE(s.ok()) << s;
    }
    EXPECT_TRUE(c.Wait(static_cast<int>(inputs.size())));
    std::vector<Collector::Result> out;
    for (const GenerateInput& in : inputs) out.push_back(c.Get(in.request_id));
    return out;
  }

  // The engine's statistics once its last step is counted (the events
  // reach the collector before the step's numbers are published).
  static EngineStats Settled(Engine& engine) {
    EngineStats s = engine.Stats();
    for (int i = 0; i < 500 && (s.running > 0 || s.blocks_used > 0); ++i) {
      absl::SleepFor(absl::Milliseconds(10));
      s = engine.Stats();
    }
    return s;
  }

  std::shared_ptr<const Model> model_;
};

TEST_F(SpeculativeEngineTest, SameTokensAsPlainDecoding) {
  std::vector<GenerateInput> inputs;
  const std::vector<std::string> prompts = {
      "Once upon a time", "Lily and Tom went to the park. Lily and Tom went to the",
      "The cat sat on the mat. The dog sat on the log. The cat"};
  int i = 0;
  for (const std::string& p : prompts) {
    inputs.push_back(Input(absl::StrCat("g", i), p, 0.0f, 1, 200));
    inputs.push_back(Input(absl::StrCat("s", i), p, 0.9f, 7 + i, 200));
    ++i;
  }
  GenerateInput stop = Input("stop", prompts[1], 0.0f, 1, 200);
  stop.params.stop = {"park."};
  inputs.push_back(stop);
  GenerateInput penalized = Input("pen", prompts[0], 0.7f, 3, 150);
  penalized.params.frequency_penalty = 0.5f;
  penalized.params.logprobs = 2;
  inputs.push_back(penalized);
  GenerateInput short_one = Input("short", prompts[2], 0.0f, 1, 5);
  inputs.push_back(short_one);

  std::unique_ptr<Engine> plain = MakeEngine(0);
  std::unique_ptr<Engine> spec = MakeEngine(5);
  ASSERT_TRUE(plain && spec);
  const std::vector<Collector::Result> want = RunAll(*plain, inputs);
  const std::vector<Collector::Result> got = RunAll(*spec, inputs);
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::string& id = inputs[k].request_id;
    EXPECT_EQ(got[k].tokens, want[k].tokens) << id;
    EXPECT_EQ(got[k].text, want[k].text) << id;
    EXPECT_EQ(got[k].finish, want[k].finish) << id;
    if (inputs[k].params.logprobs < 0) continue;
    EXPECT_EQ(got[k].logprobs.size(), got[k].tokens.size()) << id;
    if (got[k].logprobs.size() == want[k].logprobs.size()) {
      for (size_t j = 0; j < got[k].logprobs.size(); ++j)
        EXPECT_NEAR(got[k].logprobs[j].logprob, want[k].logprobs[j].logprob, 1e-4)
            << id << " " << j;
    }
  }
  EXPECT_EQ(want[inputs.size() - 1].tokens.size(), 5u);
  const EngineStats s = Settled(*spec);
  const EngineStats p = Settled(*plain);
  EXPECT_GT(s.draft_tokens, 0);
  EXPECT_GT(s.accepted_draft_tokens, 0);
  EXPECT_LE(s.accepted_draft_tokens, s.draft_tokens);
  EXPECT_EQ(s.generated_tokens, p.generated_tokens);
  EXPECT_EQ(s.blocks_used, 0);  // rejected drafts left no block behind
  std::printf("speculative: %lld of %lld drafts accepted, %lld steps instead of %lld\n",
              static_cast<long long>(s.accepted_draft_tokens),
              static_cast<long long>(s.draft_tokens), static_cast<long long>(s.steps),
              static_cast<long long>(p.steps));
}

// Alone, a request whose text repeats itself takes fewer steps than it has
// tokens: each accepted draft saved one.
TEST_F(SpeculativeEngineTest, AcceptedDraftsSaveSteps) {
  std::unique_ptr<Engine> spec = MakeEngine(5);
  ASSERT_TRUE(spec);
  GenerateInput in =
      Input("alone", "Lily and Tom went to the park. Lily and Tom went to the", 0.0f, 1, 200);
  const Collector::Result r = RunAll(*spec, {in})[0];
  const EngineStats s = Settled(*spec);
  ASSERT_EQ(r.tokens.size(), 200u);
  EXPECT_GT(s.accepted_draft_tokens, 0);
  // The prompt's step gives the first token; each step after it one, plus
  // the drafts it accepted.
  EXPECT_EQ(s.steps, 200 - s.accepted_draft_tokens)
      << s.accepted_draft_tokens << " of " << s.draft_tokens;
}

// The prefix cache holds only checked tokens: a second request with the
// first one's whole text as its prompt hits the cache and goes on as plain
// decoding would.
TEST_F(SpeculativeEngineTest, PrefixCacheHoldsOnlyCheckedTokens) {
  std::unique_ptr<Engine> plain = MakeEngine(0);
  std::unique_ptr<Engine> spec = MakeEngine(6);
  ASSERT_TRUE(plain && spec);
  GenerateInput first = Input("first", "Lily and Tom went to the park. Lily and Tom", 0.0f, 1, 120);
  const Collector::Result a = RunAll(*spec, {first})[0];
  GenerateInput second = first;
  second.request_id = "second";
  second.prompt_ids.insert(second.prompt_ids.end(), a.tokens.begin(), a.tokens.end());
  second.params.max_tokens = 60;
  const Collector::Result b = RunAll(*spec, {second})[0];
  const Collector::Result want = RunAll(*plain, {second})[0];
  EXPECT_GT(b.last.cached_prompt_tokens, 0);
  EXPECT_EQ(b.tokens, want.tokens);
}

}  // namespace
}  // namespace ferry
