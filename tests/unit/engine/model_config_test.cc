#include "engine/model_config.h"

#include <cmath>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {

nlohmann::json LlamaConfig() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 2048,
    "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "max_position_embeddings": 2048, "tie_word_embeddings": false, "eos_token_id": 2})");
}

TEST(ModelConfigTest, ParsesLlama) {
  auto c = ModelConfigFromHf(LlamaConfig(), "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "llama");
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->kv_dim(), 256);
  EXPECT_EQ(c->rope_style, RopeStyle::kHalfSplit);
  EXPECT_EQ(c->eos_token_ids, std::vector<int>{2});
  EXPECT_FALSE(c->attention_bias);
}

TEST(ModelConfigTest, Qwen2HasBiasesAndExplicitHeadDim) {
  auto j = LlamaConfig();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["head_dim"] = 128;
  j["eos_token_id"] = {151643, 151645};
  auto c = ModelConfigFromHf(j, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->eos_token_ids.size(), 2u);
}

TEST(ModelConfigTest, RejectsBadConfigsNamingTheKey) {
  auto j = LlamaConfig();
  j["architectures"] = {"GPT2LMHeadModel"};
  auto c = ModelConfigFromHf(j, "config.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(c.status().message().find("GPT2LMHeadModel"), absl::string_view::npos);

  j = LlamaConfig();
  j["hidden_size"] = "2048";
  c = ModelConfigFromHf(j, "config.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("hidden_size"), absl::string_view::npos);

  j = LlamaConfig();
  j.erase("num_hidden_layers");
  c = ModelConfigFromHf(j, "config.json");
  EXPECT_NE(c.status().message().find("num_hidden_layers"), absl::string_view::npos);

  j = LlamaConfig();
  j["num_key_value_heads"] = 5;
  EXPECT_FALSE(ModelConfigFromHf(j, "config.json").ok());

  j = LlamaConfig();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  EXPECT_EQ(ModelConfigFromHf(j, "config.json").status().code(), absl::StatusCode::kUnimplemented);

  EXPECT_FALSE(ModelConfigFromHf(nlohmann::json::array(), "config.json").ok());
}

TEST(ModelConfigTest, RopeScalingLinearAndLlama3) {
  auto j = LlamaConfig();
  auto base = ModelConfigFromHf(j, "c")->RopeInverseFrequencies();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  auto linear = ModelConfigFromHf(j, "c")->RopeInverseFrequencies();
  ASSERT_EQ(base.size(), linear.size());
  for (size_t i = 0; i < base.size(); ++i) EXPECT_FLOAT_EQ(linear[i], base[i] / 2);

  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  j["rope_theta"] = 500000.0;
  auto c = ModelConfigFromHf(j, "c");
  ASSERT_TRUE(c.ok()) << c.status();
  auto plain_j = j;
  plain_j.erase("rope_scaling");
  auto plain = ModelConfigFromHf(plain_j, "c")->RopeInverseFrequencies();
  auto scaled = c->RopeInverseFrequencies();
  // Highest frequency kept, lowest divided by the factor.
  EXPECT_FLOAT_EQ(scaled.front(), plain.front());
  EXPECT_FLOAT_EQ(scaled.back(), plain.back() / 8);
  for (size_t i = 0; i < scaled.size(); ++i) {
    EXPECT_LE(scaled[i], plain[i] * 1.000001f);
    EXPECT_GE(scaled[i], plain[i] / 8 * 0.999999f);
  }
}

}  // namespace
}  // namespace ferry
