#include "benchmarks/loadgen/dataset.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace ferry::loadgen {
namespace {

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = ferry::testing::UniqueTempPath("loadgen-" + name);
  std::ofstream(path) << text;
  return path;
}

int Words(const std::string& s) {
  return static_cast<int>(std::vector<std::string>(absl::StrSplit(s, ' ')).size());
}

TEST(DatasetTest, RandomLengthsStayInRangeAndAreSeeded) {
  DatasetOptions o;
  o.num_prompts = 200;
  o.input_len = 100;
  o.output_len = 50;
  o.range_ratio = 0.5;
  o.seed = 9;
  auto a = LoadDataset(o);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->size(), 200u);
  int min_in = 1 << 30, max_in = 0;
  for (const BenchRequest& r : *a) {
    EXPECT_GE(r.input_tokens, 50);
    EXPECT_LE(r.input_tokens, 150);
    EXPECT_GE(r.output_tokens, 25);
    EXPECT_LE(r.output_tokens, 75);
    EXPECT_EQ(Words(r.prompt), r.input_tokens);
    min_in = std::min(min_in, r.input_tokens);
    max_in = std::max(max_in, r.input_tokens);
  }
  EXPECT_LT(min_in, 60);
  EXPECT_GT(max_in, 140);
  auto b = LoadDataset(o);
  EXPECT_EQ((*a)[17].prompt, (*b)[17].prompt);
}

TEST(DatasetTest, PrefixRequestsShareFewSystemPrompts) {
  DatasetOptions o;
  o.name = "prefix";
  o.num_prompts = 40;
  o.num_prefixes = 3;
  o.prefix_len = 64;
  o.input_len = 8;
  auto d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  std::set<std::string> prefixes, prompts;
  for (const BenchRequest& r : *d) {
    prefixes.insert(r.prompt.substr(0, r.prompt.find('\n')));
    prompts.insert(r.prompt);
    EXPECT_EQ(r.input_tokens, 72);
  }
  EXPECT_EQ(prefixes.size(), 3u);
  EXPECT_GT(prompts.size(), 30u);
}

TEST(DatasetTest, ShareGptUsesTheFirstHumanTurnAndTheReplyLength) {
  std::string path = WriteTemp("sharegpt.json", R"([
    {"id": "a", "conversations": [{"from": "human", "value": "What is up?"}, {"from": "gpt", "value": "0123456789abcdef"}]},
    {"id": "b", "conversations": [{"from": "gpt", "value": "no human"}]},
    {"id": "c", "conversations": [{"from": "human", "value": "Only a question"}]},
    {"id": "d", "prompt_tokens": 12, "response_tokens": 34,
     "conversations": [{"from": "human", "value": "counted"}, {"from": "gpt", "value": "x"}]}
  ])");
  DatasetOptions o;
  o.name = "sharegpt";
  o.path = path;
  o.num_prompts = 6;
  o.output_len = 99;
  auto d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 6u);  // three usable entries, cycled
  std::map<std::string, int> out_len;
  for (const BenchRequest& r : *d) out_len[r.prompt] = r.output_tokens;
  ASSERT_EQ(out_len.size(), 3u);
  EXPECT_EQ(out_len["What is up?"], 4);  // 16 characters / 4
  EXPECT_EQ(out_len["Only a question"], 99);
  EXPECT_EQ(out_len["counted"], 34);
}

TEST(DatasetTest, ShareGptSamplesFromTheSharedTraces) {
  FERRY_REQUIRE_SHARED(path, "traces/sharegpt_sample_50conv.json");
  DatasetOptions o;
  o.name = "sharegpt";
  o.path = path;
  o.num_prompts = 20;
  auto d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 20u);
  for (const BenchRequest& r : *d) {
    EXPECT_GE(r.input_tokens, 1000);
    EXPECT_GE(r.output_tokens, 1);
  }
}

TEST(DatasetTest, MalformedFilesGiveClearErrors) {
  DatasetOptions o;
  o.name = "sharegpt";
  o.path = WriteTemp("bad.json", "{not json");
  EXPECT_NE(LoadDataset(o).status().message().find("not valid JSON"), std::string::npos);
  o.path = WriteTemp("obj.json", R"({"conversations": []})");
  EXPECT_NE(LoadDataset(o).status().message().find("expected a JSON list"), std::string::npos);
  o.path = WriteTemp("noconv.json", R"([{"id": 1}])");
  EXPECT_NE(LoadDataset(o).status().message().find("entry 0 has no \"conversations\""),
            std::string::npos);
  o.path = "/nonexistent/file.json";
  EXPECT_EQ(LoadDataset(o).status().code(), absl::StatusCode::kNotFound);
  o.path = "";
  EXPECT_NE(LoadDataset(o).status().message().find("--dataset-path"), std::string::npos);

  o.name = "trace";
  o.path = WriteTemp("bad.csv", "0,10,5\n1.5,abc,5\n");
  absl::Status s = LoadDataset(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bad.csv:2"), std::string::npos) << s;
  o.path = WriteTemp(
      "bad.jsonl",
      "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1}\n");
  s = LoadDataset(o).status();
  EXPECT_NE(s.message().find("bad.jsonl:2"), std::string::npos) << s;
  o.path = WriteTemp("empty.csv", "\n");
  EXPECT_FALSE(LoadDataset(o).ok());
  o.name = "nope";
  EXPECT_NE(LoadDataset(o).status().message().find("unknown --dataset"), std::string::npos);
}

TEST(DatasetTest, PlainCsvTraceIsSortedAndRelativeToTheFirstRow) {
  DatasetOptions o;
  o.name = "trace";
  o.path = WriteTemp("plain.csv", "timestamp,input,output\n10.5,100,20\n10.0,50,5\n12.0,7,3\n");
  o.trace_time_scale = 0.5;
  o.max_input_len = 60;
  auto d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 3u);
  EXPECT_DOUBLE_EQ(*(*d)[0].arrival_s, 0.0);
  EXPECT_EQ((*d)[0].input_tokens, 50);
  EXPECT_DOUBLE_EQ(*(*d)[1].arrival_s, 0.25);
  EXPECT_EQ((*d)[1].input_tokens, 60);  // clipped
  EXPECT_DOUBLE_EQ(*(*d)[2].arrival_s, 1.0);
  EXPECT_EQ((*d)[2].output_tokens, 3);
}

TEST(DatasetTest, ReadsTheAzureAndMooncakeTraces) {
  FERRY_REQUIRE_SHARED(azure, "traces/AzureLLMInferenceTrace_code.csv");
  DatasetOptions o;
  o.name = "trace";
  o.path = azure;
  o.num_prompts = 3;
  auto d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 3u);
  // 18:17:03.97996, 18:17:04.03196, ...: 4808/10, 3180/8.
  EXPECT_DOUBLE_EQ(*(*d)[0].arrival_s, 0.0);
  EXPECT_EQ((*d)[0].input_tokens, 4808);
  EXPECT_EQ((*d)[0].output_tokens, 10);
  EXPECT_NEAR(*(*d)[1].arrival_s, 0.052, 1e-6);
  EXPECT_EQ((*d)[1].input_tokens, 3180);

  FERRY_REQUIRE_SHARED(mooncake, "traces/mooncake_conversation_trace.jsonl");
  o.path = mooncake;
  o.num_prompts = 50;
  o.max_input_len = 1000;
  d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 50u);
  EXPECT_EQ((*d)[0].input_tokens, 1000);  // 6758, clipped
  EXPECT_EQ((*d)[0].output_tokens, 500);
  for (size_t i = 1; i < d->size(); ++i) EXPECT_LE(*(*d)[i - 1].arrival_s, *(*d)[i].arrival_s);
}

}  // namespace
}  // namespace ferry::loadgen
