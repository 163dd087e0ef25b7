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
#include "tests/test_support.h"

namespace ferry {
namespace {

using Kind = structured::OutputSpec::Kind;

class StructuredEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
    auto m = Model::Load(path, LoadOptions{.progress = false});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::shared_ptr<const Model>(std::move(*m));
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
