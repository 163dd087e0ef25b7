// Structured output in the engine's step loop on a real model
// (stories260K, which never writes JSON by itself): whatever the sampling,
// the text matches the schema, regex or choice, n > 1 and resumed samples
// included, and bad specifications are rejected at submission.
#include <memory>
#include <regex>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/engine/collector.h"
#include "tests/integration/engine/shared_model.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using Kind = structured::OutputSpec::Kind;

class StructuredEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_LOAD_SHARED_MODEL(model_, "models/stories260K.gguf");
    auto e = Engine::Create(model_, EngineOptions{.threads = 2});
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
  }

  GenerateInput Input(const std::string& id, structured::OutputSpec spec, float temperature,
                      uint64_t seed) {
    GenerateInput in;
    in.request_id = id;
    in.prompt_ids = model_->tokenizer().Encode("Once upon a time", true, false);
    in.params.temperature = temperature;
    in.params.seed = seed;
    in.params.max_tokens = 400;
    in.params.structured = std::move(spec);
    return in;
  }

  Collector::Result Run(GenerateInput in) {
    Collector c;
    const std::string id = in.request_id;
    const int n = in.params.n;
    absl::Status s = engine_->Submit(std::move(in), c.Sink());
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_TRUE(c.Wait(n));
    return c.Get(id);
  }

  std::shared_ptr<const Model> model_;
  std::unique_ptr<Engine> engine_;
};

const char* kPersonSchema = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":12},
  "age":{"type":"integer","minimum":18,"maximum":99},
  "score":{"type":"number","exclusiveMinimum":0,"maximum":1},
  "pet":{"enum":["cat","dog","bird"]},
  "friends":{"type":"array","items":{"type":"string","maxLength":6},"maxItems":3},
  "happy":{"type":"boolean"}},
  "required":["name","age","score","pet","happy"]})";

void ExpectPerson(const std::string& text, const std::string& where) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << where << ": not JSON: " << text;
  ASSERT_TRUE(j.is_object()) << where;
  ASSERT_TRUE(j["name"].is_string()) << text;
  EXPECT_LE(j["name"].get<std::string>().size(), 12u * 4) << text;
  ASSERT_TRUE(j["age"].is_number_integer()) << text;
  EXPECT_GE(j["age"].get<int64_t>(), 18) << text;
  EXPECT_LE(j["age"].get<int64_t>(), 99) << text;
  ASSERT_TRUE(j["score"].is_number()) << text;
  EXPECT_GT(j["score"].get<double>(), 0.0) << text;
  EXPECT_LE(j["score"].get<double>(), 1.0) << text;
  EXPECT_TRUE(std::set<std::string>({"cat", "dog", "bird"}).count(j["pet"].get<std::string>()))
      << text;
  EXPECT_TRUE(j["happy"].is_boolean()) << text;
  if (j.contains("friends")) {
    ASSERT_TRUE(j["friends"].is_array()) << text;
    EXPECT_LE(j["friends"].size(), 3u) << text;
  }
  for (const auto& [key, value] : j.items()) {
    EXPECT_TRUE(
        std::set<std::string>({"name", "age", "score", "pet", "friends", "happy"}).count(key))
        << text;
  }
}

TEST_F(StructuredEngineTest, JsonSchemaHoldsForGreedyAndSampledOutput) {
  for (float t : {0.0f, 0.8f, 1.5f}) {
    for (uint64_t seed : {1, 2, 3}) {
      const std::string id = absl::StrCat("p", t, "-", seed);
      Collector::Result r = Run(Input(id, {Kind::kJsonSchema, kPersonSchema, {}}, t, seed));
      ASSERT_EQ(r.finish, FinishReason::kStop) << id << ": " << r.text;
      ExpectPerson(r.text, id);
      if (t == 0.0f) break;
    }
  }
}

TEST_F(StructuredEngineTest, ParallelSamplesEachMatch) {
  GenerateInput in = Input("n", {Kind::kJsonSchema, kPersonSchema, {}}, 1.0f, 9);
  in.params.n = 4;
  Collector c;
  ASSERT_TRUE(engine_->Submit(in, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(4));
  std::set<std::string> texts;
  for (int i = 0; i < 4; ++i) {
    Collector::Result r = c.Get("n", i);
    EXPECT_EQ(r.finish, FinishReason::kStop) << r.text;
    ExpectPerson(r.text, absl::StrCat("sample ", i));
    texts.insert(r.text);
  }
  EXPECT_GT(texts.size(), 1u);  // the samples differ
}

TEST_F(StructuredEngineTest, RegexAndChoice) {
  const std::regex phone(R"(\(\d{3}\) \d{3}-\d{4})");
  for (uint64_t seed : {1, 2, 3, 4}) {
    Collector::Result r = Run(Input(absl::StrCat("re", seed),
                                    {Kind::kRegex, R"(\(\d{3}\) \d{3}-\d{4})", {}}, 1.0f, seed));
    EXPECT_EQ(r.finish, FinishReason::kStop);
    EXPECT_TRUE(std::regex_match(r.text, phone)) << r.text;
  }
  // With a leading space each choice starts with one of the model's word
  // tokens ("\u2581Lily"), so the sampled picks vary.
  std::set<std::string> picked;
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    Collector::Result r =
        Run(Input(absl::StrCat("c", seed), {Kind::kChoice, "", {" Lily", " Tom", " the dragon"}},
                  1.5f, seed));
    EXPECT_EQ(r.finish, FinishReason::kStop);
    EXPECT_TRUE(r.text == " Lily" || r.text == " Tom" || r.text == " the dragon") << r.text;
    picked.insert(r.text);
  }
  EXPECT_GT(picked.size(), 1u) << *picked.begin();
}

TEST_F(StructuredEngineTest, AnyJsonObjectParses) {
  for (uint64_t seed : {1, 2, 3}) {
    Collector::Result r =
        Run(Input(absl::StrCat("o", seed), {Kind::kJsonObject, "", {}}, 0.7f, seed));
    if (r.finish == FinishReason::kLength) continue;  // a string that ran past max_tokens
    nlohmann::json j = nlohmann::json::parse(r.text, nullptr, false);
    EXPECT_TRUE(!j.is_discarded() && j.is_object()) << r.text;
  }
}

// A sample resumed after k tokens (as after a migration or a worker loss)
// continues under the grammar to the same tokens.
TEST_F(StructuredEngineTest, ResumedSampleContinuesUnderTheGrammar) {
  GenerateInput in = Input("full", {Kind::kJsonSchema, kPersonSchema, {}}, 1.0f, 5);
  Collector::Result full = Run(in);
  ASSERT_EQ(full.finish, FinishReason::kStop);
  ASSERT_GT(full.tokens.size(), 8u);
  const size_t k = full.tokens.size() / 2;
  GenerateInput resumed = in;
  resumed.request_id = "resumed";
  ResumeState state;
  state.output_ids.assign(full.tokens.begin(), full.tokens.begin() + static_cast<long>(k));
  state.emitted_text_bytes = 0;
  resumed.resume = state;
  Collector::Result rest = Run(resumed);
  std::vector<int32_t> expected(full.tokens.begin() + static_cast<long>(k), full.tokens.end());
  EXPECT_EQ(rest.tokens, expected);
}

// Reasoning models: the grammar waits for the end of the thinking. The
// model here writes no <think>, so the first sentence plays the thinking
// (its end is the first "."): greedy, it is the same text as without a
// grammar, and only what follows the "." is held to the choice.
TEST_F(StructuredEngineTest, GrammarAppliesAfterTheThinking) {
  GenerateInput free = Input("free", {}, 0.0f, 1);
  free.params.max_tokens = 60;
  Collector::Result plain = Run(free);
  const size_t dot = plain.text.find('.');
  ASSERT_NE(dot, std::string::npos) << plain.text;

  GenerateInput in = Input("think", {Kind::kChoice, "", {" yes", " no"}}, 0.0f, 1);
  in.params.reasoning = {.start = "", .end = ".", .budget_tokens = -1};
  Collector::Result r = Run(in);
  EXPECT_EQ(r.finish, FinishReason::kStop) << r.text;
  ASSERT_GT(r.text.size(), dot) << r.text;
  EXPECT_EQ(r.text.substr(0, dot + 1), plain.text.substr(0, dot + 1));
  const std::string answer = r.text.substr(dot + 1);
  EXPECT_TRUE(answer == " yes" || answer == " no") << r.text;

  // Sampled as well: whatever the thinking, the answer is a choice.
  for (uint64_t seed : {1, 2, 3}) {
    GenerateInput s =
        Input(absl::StrCat("think", seed), {Kind::kChoice, "", {" yes", " no"}}, 1.0f, seed);
    s.params.reasoning = {.start = "", .end = ".", .budget_tokens = -1};
    Collector::Result t = Run(s);
    if (t.finish == FinishReason::kLength) continue;  // thought past max_tokens
    const size_t end = t.text.find('.');
    ASSERT_NE(end, std::string::npos) << t.text;
    const std::string a = t.text.substr(end + 1);
    EXPECT_TRUE(a == " yes" || a == " no") << t.text;
  }
}

// A thinking budget: after that many tokens the engine writes the end
// itself, and the grammar's answer follows.
TEST_F(StructuredEngineTest, ThinkingBudgetForcesTheEnd) {
  const std::string end = "</think>";
  const std::vector<int32_t> end_ids = model_->tokenizer().Encode(end, false, true);
  ASSERT_FALSE(end_ids.empty());
  for (int budget : {0, 1, 7}) {
    GenerateInput in =
        Input(absl::StrCat("b", budget), {Kind::kRegex, R"( ?\(\d{3}\) \d{3}-\d{4})", {}}, 0.8f, 3);
    in.params.reasoning = {.start = "", .end = end, .budget_tokens = budget};
    Collector::Result r = Run(in);
    EXPECT_EQ(r.finish, FinishReason::kStop) << r.text;
    ASSERT_GE(r.tokens.size(), static_cast<size_t>(budget) + end_ids.size()) << r.text;
    const std::vector<int32_t> forced(
        r.tokens.begin() + budget, r.tokens.begin() + budget + static_cast<long>(end_ids.size()));
    EXPECT_EQ(forced, end_ids) << r.text;
    const size_t at = r.text.find(end);
    ASSERT_NE(at, std::string::npos) << r.text;
    EXPECT_TRUE(
        std::regex_match(r.text.substr(at + end.size()), std::regex(R"( ?\(\d{3}\) \d{3}-\d{4})")))
        << r.text;
  }
  // Without a grammar the budget still ends the thinking, and the answer is
  // free text.
  GenerateInput in = Input("free-budget", {}, 0.0f, 1);
  in.params.max_tokens = 30;
  in.params.reasoning = {.start = "", .end = end, .budget_tokens = 4};
  Collector::Result r = Run(in);
  ASSERT_GE(r.tokens.size(), 4 + end_ids.size());
  EXPECT_EQ(std::vector<int32_t>(r.tokens.begin() + 4,
                                 r.tokens.begin() + 4 + static_cast<long>(end_ids.size())),
            end_ids);
}

// A thinking that must open with `start`: under a grammar the first token
// is the grammar's or the opening, which is then written out whole.
TEST_F(StructuredEngineTest, ThinkingOpensOnlyWithItsStart) {
  // Greedy, the model goes on with ", there was ..." after "Once upon a
  // time": offered "," as the opening, it takes it and thinks to the ".".
  GenerateInput in = Input("open", {Kind::kChoice, "", {" yes", " no"}}, 0.0f, 1);
  in.params.reasoning = {.start = ",", .end = ".", .budget_tokens = -1};
  Collector::Result r = Run(in);
  // (The model's SentencePiece vocabulary encodes the tag as " ,".)
  const size_t first = r.text.find_first_not_of(' ');
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(r.text[first], ',') << r.text;
  const size_t dot = r.text.find('.');
  ASSERT_NE(dot, std::string::npos) << r.text;
  const std::string answer = r.text.substr(dot + 1);
  EXPECT_TRUE(answer == " yes" || answer == " no") << r.text;
  // An opening the model does not take: the answer starts at once.
  GenerateInput none = Input("no-open", {Kind::kChoice, "", {" yes", " no"}}, 0.0f, 1);
  none.params.reasoning = {.start = "<think>", .end = "</think>", .budget_tokens = -1};
  none.params.logit_bias = {{model_->tokenizer().Encode("<think>", false, true)[0], -100.0f}};
  Collector::Result direct = Run(none);
  EXPECT_TRUE(direct.text == " yes" || direct.text == " no") << direct.text;
}

// Resumed inside the thinking and inside the answer: the engine finds the
// thinking's end again from the tokens and goes on to the same tokens.
TEST_F(StructuredEngineTest, ResumedReasoningSampleContinues) {
  GenerateInput in = Input("rfull", {Kind::kRegex, R"( ?\(\d{3}\) \d{3}-\d{4})", {}}, 1.0f, 11);
  in.params.reasoning = {.start = "", .end = "</think>", .budget_tokens = 6};
  Collector::Result full = Run(in);
  ASSERT_EQ(full.finish, FinishReason::kStop) << full.text;
  for (size_t k : {size_t{3}, size_t{7}, full.tokens.size() - 2}) {
    GenerateInput resumed = in;
    resumed.request_id = absl::StrCat("rres", k);
    ResumeState state;
    state.output_ids.assign(full.tokens.begin(), full.tokens.begin() + static_cast<long>(k));
    resumed.resume = state;
    Collector::Result rest = Run(resumed);
    EXPECT_EQ(rest.tokens,
              std::vector<int32_t>(full.tokens.begin() + static_cast<long>(k), full.tokens.end()))
        << "resumed after " << k;
  }
}

TEST_F(StructuredEngineTest, BadSpecificationsAreRejectedAtSubmission) {
  Collector c;
  for (const structured::OutputSpec& spec :
       {structured::OutputSpec{Kind::kJsonSchema, R"({"type":"strng"})", {}},
        structured::OutputSpec{Kind::kJsonSchema, "{oops", {}},
        structured::OutputSpec{Kind::kRegex, "(a", {}},
        structured::OutputSpec{Kind::kChoice, "", {}}}) {
    absl::Status s = engine_->Submit(Input("bad", spec, 0, 1), c.Sink());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("structured output"), std::string::npos) << s;
  }
  // The engine still serves.
  Collector::Result r = Run(Input("after", {Kind::kChoice, "", {"yes", "no"}}, 0, 1));
  EXPECT_TRUE(r.text == "yes" || r.text == "no") << r.text;
}

}  // namespace
}  // namespace ferry
