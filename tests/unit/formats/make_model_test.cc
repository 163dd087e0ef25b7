#include "tools/make_model.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <unordered_map>

#include "engine/formats/gguf.h"
#include "engine/formats/gguf_writer.h"
#include "engine/formats/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/formats/test_files.h"

namespace ferry {
namespace {

using ::testing::ElementsAre;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<float> TensorValues(const SafetensorsTensor& t) {
  return DecodeToF32(t.dtype, {t.data, t.num_bytes});
}

// A plain byte-level BPE encoder (merge the best-ranked pair until none
// applies) to check that the vocabulary and merges work together.
class MiniBpe {
 public:
  explicit MiniBpe(const ByteLevelBpeVocab& v) : v_(v) {
    for (size_t i = 0; i < v.tokens.size(); ++i) ids_[v.tokens[i]] = static_cast<int>(i);
    for (size_t r = 0; r < v.merges.size(); ++r) ranks_[v.merges[r]] = static_cast<int>(r);
    for (int b = 0; b < 256; ++b) bytes_[ByteLevelChar(static_cast<uint8_t>(b))] = static_cast<char>(b);
  }
  std::vector<int> Encode(std::string_view text) const {
    std::vector<int> out;
    for (const std::string& word : PreTokenizeAscii(text)) {
      std::vector<std::string> syms;
      for (unsigned char c : word) syms.push_back(ByteLevelChar(c));
      while (syms.size() > 1) {
        int best = -1, best_rank = INT32_MAX;
        for (size_t i = 0; i + 1 < syms.size(); ++i) {
          auto it = ranks_.find(syms[i] + " " + syms[i + 1]);
          if (it != ranks_.end() && it->second < best_rank) best = static_cast<int>(i), best_rank = it->second;
        }
        if (best < 0) break;
        syms[best] += syms[best + 1];
        syms.erase(syms.begin() + best + 1);
      }
      for (const std::string& s : syms) out.push_back(ids_.at(s));
    }
    return out;
  }
  std::string Decode(const std::vector<int>& ids) const {
    std::string text;
    for (int id : ids) {
      const std::string& t = v_.tokens[id];
      for (size_t i = 0; i < t.size();) {
        size_t len = (static_cast<unsigned char>(t[i]) < 0x80) ? 1 : 2;
        text += bytes_.at(t.substr(i, len));
        i += len;
      }
    }
    return text;
  }

 private:
  const ByteLevelBpeVocab& v_;
  std::unordered_map<std::string, int> ids_, ranks_;
  std::unordered_map<std::string, char> bytes_;
};

TEST(MakeModelTest, Presets) {
  auto tiny = FindModelPreset("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->hidden_size, 128);
  EXPECT_EQ(tiny->num_kv_heads, 2);
  EXPECT_EQ(tiny->head_dim * tiny->num_heads, 128);
  EXPECT_EQ(FindModelPreset("medium")->num_layers, 22);
  EXPECT_EQ(FindModelPreset("huge").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MakeModelTest, PreTokenizerFollowsTheGpt2Regex) {
  EXPECT_THAT(PreTokenizeAscii("Hello world's  end\n\nok 123 !!x"),
              ElementsAre("Hello", " world", "'s", " ", " end", "\n", "\n", "ok", " 123", " !!", "x"));
  EXPECT_THAT(PreTokenizeAscii("I'll we've  \n"), ElementsAre("I", "'ll", " we", "'ve", "  \n"));
  EXPECT_THAT(PreTokenizeAscii("a\n b"), ElementsAre("a", "\n", " b"));
}

TEST(MakeModelTest, ByteLevelMapping) {
  EXPECT_EQ(ByteLevelChar('A'), "A");
  EXPECT_EQ(ByteLevelChar(' '), "\xc4\xa0");   // U+0120 'Ġ'
  EXPECT_EQ(ByteLevelChar('\n'), "\xc4\x8a");  // U+010A 'Ċ'
  EXPECT_EQ(ByteLevelChar(0), "\xc4\x80");     // U+0100
  std::set<std::string> all;
  for (int b = 0; b < 256; ++b) all.insert(ByteLevelChar(static_cast<uint8_t>(b)));
  EXPECT_EQ(all.size(), 256u);
}

TEST(MakeModelTest, TokenizerIsConsistentAndWorks) {
  ByteLevelBpeVocab v = TrainByteLevelBpe(512);
  ASSERT_EQ(v.tokens.size(), 512u);
  ASSERT_EQ(v.special.size(), 512u);
  EXPECT_EQ(std::set<std::string>(v.tokens.begin(), v.tokens.end()).size(), 512u);
  EXPECT_EQ(v.tokens[v.bos_id], "<|begin_of_text|>");
  EXPECT_EQ(v.tokens[v.eos_id], "<|end_of_text|>");
  EXPECT_EQ(v.tokens[v.im_start_id], "<|im_start|>");
  EXPECT_EQ(v.tokens[v.im_end_id], "<|im_end|>");
  EXPECT_EQ(v.bos_id, 508);  // the corpus fills the whole non-special vocabulary
  std::set<std::string> vocab(v.tokens.begin(), v.tokens.end());
  for (const std::string& m : v.merges) {
    size_t sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos) << m;
    EXPECT_TRUE(vocab.count(m.substr(0, sp))) << m;
    EXPECT_TRUE(vocab.count(m.substr(sp + 1))) << m;
    EXPECT_TRUE(vocab.count(m.substr(0, sp) + m.substr(sp + 1))) << m;
  }
  MiniBpe bpe(v);
  const std::string text = "The keeper counted the ships at night, and 42 birds!\nWhy? Zebra-xylophone.";
  std::vector<int> ids = bpe.Encode(text);
  EXPECT_EQ(bpe.Decode(ids), text);
  EXPECT_LT(ids.size() * 3, text.size() * 2) << "merges should compress English text";
  EXPECT_EQ(bpe.Encode(" the").size(), 1u);

  // The same vocabulary every time.
  ByteLevelBpeVocab again = TrainByteLevelBpe(512);
  EXPECT_EQ(again.tokens, v.tokens);
  EXPECT_EQ(again.merges, v.merges);
}

TEST(MakeModelTest, LargeVocabularyIsFilledWithReservedTokens) {
  ByteLevelBpeVocab v = TrainByteLevelBpe(32000);
  ASSERT_EQ(v.tokens.size(), 32000u);
  EXPECT_EQ(std::set<std::string>(v.tokens.begin(), v.tokens.end()).size(), 32000u);
  EXPECT_EQ(v.tokens.back().rfind("<|reserved_", 0), 0u);
  EXPECT_TRUE(v.special.back());
  EXPECT_FALSE(v.special[v.bos_id - 1]);
}

const char* const kTinyNames[] = {
    "model.embed_tokens.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.weight",
    "model.layers.0.self_attn.v_proj.weight",
    "model.layers.0.self_attn.o_proj.weight",
    "model.layers.0.post_attention_layernorm.weight",
    "model.layers.0.mlp.gate_proj.weight",
    "model.layers.0.mlp.up_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
    "model.layers.1.input_layernorm.weight",
    "model.layers.1.self_attn.q_proj.weight",
    "model.layers.1.self_attn.k_proj.weight",
    "model.layers.1.self_attn.v_proj.weight",
    "model.layers.1.self_attn.o_proj.weight",
    "model.layers.1.post_attention_layernorm.weight",
    "model.layers.1.mlp.gate_proj.weight",
    "model.layers.1.mlp.up_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
    "model.layers.2.input_layernorm.weight",
    "model.layers.2.self_attn.q_proj.weight",
    "model.layers.2.self_attn.k_proj.weight",
    "model.layers.2.self_attn.v_proj.weight",
    "model.layers.2.self_attn.o_proj.weight",
    "model.layers.2.post_attention_layernorm.weight",
    "model.layers.2.mlp.gate_proj.weight",
    "model.layers.2.mlp.up_proj.weight",
    "model.layers.2.mlp.down_proj.weight",
    "model.layers.3.input_layernorm.weight",
    "model.layers.3.self_attn.q_proj.weight",
    "model.layers.3.self_attn.k_proj.weight",
    "model.layers.3.self_attn.v_proj.weight",
    "model.layers.3.self_attn.o_proj.weight",
    "model.layers.3.post_attention_layernorm.weight",
    "model.layers.3.mlp.gate_proj.weight",
    "model.layers.3.mlp.up_proj.weight",
    "model.layers.3.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
};

TEST(MakeModelTest, TinyHfModel) {
  testing::ScratchDir dir;
  MakeModelOptions o;
  o.out_dir = dir.File("tiny");
  o.seed = 7;
  ASSERT_TRUE(MakeModel(o).ok());
  auto m = SafetensorsModel::Open(o.out_dir);
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<std::string> names;
  for (const SafetensorsTensor* t : (*m)->tensors()) names.push_back(t->name);
  EXPECT_THAT(names, ::testing::ElementsAreArray(kTinyNames));
  auto shape = [&](const char* n) { return (*m)->Find(n)->shape; };
  EXPECT_EQ(shape("model.embed_tokens.weight"), (std::vector<uint64_t>{1024, 128}));
  EXPECT_EQ(shape("model.layers.0.self_attn.q_proj.weight"), (std::vector<uint64_t>{128, 128}));
  EXPECT_EQ(shape("model.layers.0.self_attn.k_proj.weight"), (std::vector<uint64_t>{64, 128}));
  EXPECT_EQ(shape("model.layers.0.self_attn.o_proj.weight"), (std::vector<uint64_t>{128, 128}));
  EXPECT_EQ(shape("model.layers.1.mlp.gate_proj.weight"), (std::vector<uint64_t>{344, 128}));
  EXPECT_EQ(shape("model.layers.1.mlp.down_proj.weight"), (std::vector<uint64_t>{128, 344}));
  EXPECT_EQ(shape("model.norm.weight"), (std::vector<uint64_t>{128}));
  EXPECT_EQ(shape("lm_head.weight"), (std::vector<uint64_t>{1024, 128}));
  for (const SafetensorsTensor* t : (*m)->tensors()) EXPECT_EQ(t->dtype, DType::kF32);

  // Random weights of the right scale; norms near 1.
  std::vector<float> q = TensorValues(*(*m)->Find("model.layers.0.self_attn.q_proj.weight"));
  double sum2 = 0;
  for (float x : q) sum2 += double(x) * x;
  EXPECT_NEAR(std::sqrt(sum2 / q.size()), 0.02, 0.002);
  for (float x : TensorValues(*(*m)->Find("model.norm.weight"))) EXPECT_NEAR(x, 1.0f, 0.15f);

  nlohmann::json c = ReadJson(o.out_dir + "/config.json");
  EXPECT_EQ(c["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(c["model_type"], "llama");
  EXPECT_EQ(c["hidden_size"], 128);
  EXPECT_EQ(c["intermediate_size"], 344);
  EXPECT_EQ(c["num_hidden_layers"], 4);
  EXPECT_EQ(c["num_attention_heads"], 4);
  EXPECT_EQ(c["num_key_value_heads"], 2);
  EXPECT_EQ(c["head_dim"], 32);
  EXPECT_EQ(c["vocab_size"], 1024);
  EXPECT_EQ(c["tie_word_embeddings"], false);
  EXPECT_EQ(c["torch_dtype"], "float32");
  EXPECT_EQ(c["rope_theta"], 10000.0);
  EXPECT_EQ(c["rms_norm_eps"], 1e-5);
  EXPECT_EQ(c["max_position_embeddings"], 2048);
  nlohmann::json tok = ReadJson(o.out_dir + "/tokenizer.json");
  EXPECT_EQ(tok["model"]["type"], "BPE");
  EXPECT_EQ(tok["model"]["vocab"].size() , 1024u);
  EXPECT_EQ(tok["model"]["vocab"]["<|begin_of_text|>"], c["bos_token_id"]);
  EXPECT_EQ(tok["added_tokens"].size(), 4u);
  EXPECT_EQ(tok["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(tok["decoder"]["type"], "ByteLevel");
  nlohmann::json tc = ReadJson(o.out_dir + "/tokenizer_config.json");
  EXPECT_EQ(tc["bos_token"], "<|begin_of_text|>");
  EXPECT_EQ(tc["add_bos_token"], true);
  EXPECT_NE(tc["chat_template"].get<std::string>().find("add_generation_prompt"), std::string::npos);
  nlohmann::json gc = ReadJson(o.out_dir + "/generation_config.json");
  EXPECT_EQ(gc["eos_token_id"], c["eos_token_id"]);
}

TEST(MakeModelTest, SameSeedSameBytes) {
  testing::ScratchDir dir;
  MakeModelOptions o;
  o.seed = 3;
  o.dtype = "bf16";
  o.out_dir = dir.File("a");
  ASSERT_TRUE(MakeModel(o).ok());
  o.out_dir = dir.File("b");
  ASSERT_TRUE(MakeModel(o).ok());
  o.seed = 4;
  o.out_dir = dir.File("c");
  ASSERT_TRUE(MakeModel(o).ok());
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_EQ(testing::ReadBytes(dir.File(std::string("a/") + f)),
              testing::ReadBytes(dir.File(std::string("b/") + f)))
        << f;
  }
  EXPECT_NE(testing::ReadBytes(dir.File("a/model.safetensors")),
            testing::ReadBytes(dir.File("c/model.safetensors")));
}

TEST(MakeModelTest, Qwen2BiasAndTiedEmbeddings) {
  testing::ScratchDir dir;
  MakeModelOptions o;
  o.out_dir = dir.File("q");
  o.qwen2_bias = true;
  o.tie_embeddings = true;
  o.dtype = "f16";
  ASSERT_TRUE(MakeModel(o).ok());
  auto m = SafetensorsModel::Open(o.out_dir);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->Find("lm_head.weight"), nullptr);
  ASSERT_NE((*m)->Find("model.layers.1.self_attn.q_proj.bias"), nullptr);
  EXPECT_EQ((*m)->Find("model.layers.1.self_attn.k_proj.bias")->shape, (std::vector<uint64_t>{64}));
  EXPECT_EQ((*m)->Find("model.layers.1.self_attn.v_proj.bias")->dtype, DType::kF16);
  nlohmann::json c = ReadJson(o.out_dir + "/config.json");
  EXPECT_EQ(c["architectures"][0], "Qwen2ForCausalLM");
  EXPECT_EQ(c["model_type"], "qwen2");
  EXPECT_EQ(c["tie_word_embeddings"], true);
  EXPECT_EQ(c["attention_bias"], true);
  EXPECT_EQ(c["torch_dtype"], "float16");
}

// The GGUF file holds the same weights as the HF directory, with Q and K
// rows permuted for interleaved RoPE.
TEST(MakeModelTest, GgufMatchesHf) {
  testing::ScratchDir dir;
  MakeModelOptions o;
  o.seed = 11;
  o.out_dir = dir.File("hf");
  ASSERT_TRUE(MakeModel(o).ok());
  o.format = "gguf";
  o.out_dir = dir.File("gguf");
  ASSERT_TRUE(MakeModel(o).ok());
  auto hf = SafetensorsModel::Open(dir.File("hf"));
  auto gg = GgufFile::Open(dir.File("gguf/model.gguf"));
  ASSERT_TRUE(hf.ok() && gg.ok());
  const GgufFile& g = **gg;
  EXPECT_EQ(g.tensors().size(), 39u);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetInt("llama.embedding_length"), 128);
  EXPECT_EQ(*g.GetInt("llama.block_count"), 4);
  EXPECT_EQ(*g.GetInt("llama.feed_forward_length"), 344);
  EXPECT_EQ(*g.GetInt("llama.attention.head_count"), 4);
  EXPECT_EQ(*g.GetInt("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(*g.GetInt("llama.rope.dimension_count"), 32);
  EXPECT_EQ(*g.GetInt("llama.context_length"), 2048);
  EXPECT_EQ(*g.GetInt("llama.vocab_size"), 1024);
  EXPECT_FLOAT_EQ(*g.GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_FLOAT_EQ(*g.GetFloat("llama.rope.freq_base"), 10000.0f);
  EXPECT_EQ(*g.GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*g.GetString("tokenizer.ggml.pre"), "gpt-2");
  EXPECT_EQ(g.GetStringArray("tokenizer.ggml.tokens")->size(), 1024u);
  EXPECT_EQ(g.GetIntArray("tokenizer.ggml.token_type")->size(), 1024u);
  EXPECT_EQ(g.GetStringArray("tokenizer.ggml.merges")->size(), TrainByteLevelBpe(1024).merges.size());
  EXPECT_EQ(*g.GetInt("tokenizer.ggml.bos_token_id"), 1020);
  EXPECT_EQ(*g.GetBool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_TRUE(g.GetString("tokenizer.chat_template").ok());

  auto values = [&](const char* name) {
    const GgufTensorInfo* t = g.FindTensor(name);
    EXPECT_NE(t, nullptr) << name;
    return DecodeToF32(t->dtype, {t->data, t->num_bytes});
  };
  EXPECT_EQ(values("token_embd.weight"), TensorValues(*(*hf)->Find("model.embed_tokens.weight")));
  EXPECT_EQ(values("output.weight"), TensorValues(*(*hf)->Find("lm_head.weight")));
  EXPECT_EQ(values("blk.1.ffn_down.weight"), TensorValues(*(*hf)->Find("model.layers.1.mlp.down_proj.weight")));
  EXPECT_EQ(values("blk.0.attn_v.weight"), TensorValues(*(*hf)->Find("model.layers.0.self_attn.v_proj.weight")));
  EXPECT_EQ(g.FindTensor("blk.0.attn_k.weight")->Shape(), (std::vector<uint64_t>{64, 128}));
  // K: 2 heads of 32 rows; GGUF row h*32 + 2j + s is HF row h*32 + 16s + j.
  std::vector<float> k_hf = TensorValues(*(*hf)->Find("model.layers.0.self_attn.k_proj.weight"));
  std::vector<float> k_gg = values("blk.0.attn_k.weight");
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 16; ++j) {
      for (int s = 0; s < 2; ++s) {
        for (int c = 0; c < 128; ++c) {
          ASSERT_EQ(k_gg[(h * 32 + 2 * j + s) * 128 + c], k_hf[(h * 32 + 16 * s + j) * 128 + c]);
        }
      }
    }
  }
}

TEST(MakeModelTest, GgufQ8_0KeepsNormsF32) {
  testing::ScratchDir dir;
  MakeModelOptions o;
  o.format = "gguf";
  o.dtype = "q8_0";
  o.tie_embeddings = true;
  o.out_dir = dir.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  auto g = GgufFile::Open(dir.File("model.gguf"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->FindTensor("output.weight"), nullptr);
  EXPECT_EQ((*g)->FindTensor("blk.0.attn_norm.weight")->dtype, DType::kF32);
  EXPECT_EQ((*g)->FindTensor("blk.0.attn_q.weight")->dtype, DType::kQ8_0);
  EXPECT_EQ((*g)->FindTensor("blk.0.ffn_down.weight")->dtype, DType::kF16);  // rows of 344
}

// q4_k writes Q4_K matrices with the output (the embedding when tied) in
// Q6_K, as llama.cpp's Q4_K files do; widths that do not split into 256-value
// blocks fall back as llama.cpp's do (Q4_K and Q5_K to Q5_0, Q6_K to Q8_0),
// and those that do not split into 32 to F16.
TEST(MakeModelTest, GgufKQuantsPickQ6KForTheOutputAndFallBackOnOddWidths) {
  auto dtype_of = [](const std::string& dir, const char* tensor) {
    auto g = GgufFile::Open(dir + "/model.gguf");
    EXPECT_TRUE(g.ok()) << g.status();
    const GgufTensorInfo* t = g.ok() ? (*g)->FindTensor(tensor) : nullptr;
    return t != nullptr ? t->dtype : DType::kI8;
  };
  {
    testing::ScratchDir dir;
    MakeModelOptions o;
    o.format = "gguf";
    o.dtype = "q4_k";
    o.preset = "mini";
    o.out_dir = dir.path().string();
    ASSERT_TRUE(MakeModel(o).ok());
    EXPECT_EQ(dtype_of(o.out_dir, "blk.0.attn_q.weight"), DType::kQ4_K);
    EXPECT_EQ(dtype_of(o.out_dir, "blk.1.ffn_down.weight"), DType::kQ4_K);
    EXPECT_EQ(dtype_of(o.out_dir, "output.weight"), DType::kQ6_K);
    EXPECT_EQ(dtype_of(o.out_dir, "token_embd.weight"), DType::kQ4_K);
    EXPECT_EQ(dtype_of(o.out_dir, "blk.0.attn_norm.weight"), DType::kF32);
  }
  {
    testing::ScratchDir dir;
    MakeModelOptions o;
    o.format = "gguf";
    o.dtype = "q4_k";
    o.preset = "mini";
    o.tie_embeddings = true;
    o.out_dir = dir.path().string();
    ASSERT_TRUE(MakeModel(o).ok());
    EXPECT_EQ(dtype_of(o.out_dir, "token_embd.weight"), DType::kQ6_K);
  }
  {
    testing::ScratchDir dir;
    MakeModelOptions o;
    o.format = "gguf";
    o.dtype = "q6_k";
    o.preset = "tiny";
    o.out_dir = dir.path().string();
    ASSERT_TRUE(MakeModel(o).ok());
    EXPECT_EQ(dtype_of(o.out_dir, "blk.0.attn_q.weight"), DType::kQ8_0);   // rows of 128
    EXPECT_EQ(dtype_of(o.out_dir, "blk.0.ffn_down.weight"), DType::kF16);  // rows of 344
  }
  {
    testing::ScratchDir dir;
    MakeModelOptions o;
    o.format = "gguf";
    o.dtype = "q5_k";
    o.preset = "tiny";
    o.out_dir = dir.path().string();
    ASSERT_TRUE(MakeModel(o).ok());
    EXPECT_EQ(dtype_of(o.out_dir, "blk.0.attn_q.weight"), DType::kQ5_0);   // rows of 128
    EXPECT_EQ(dtype_of(o.out_dir, "output.weight"), DType::kQ8_0);         // Q6_K, rows of 128
    EXPECT_EQ(dtype_of(o.out_dir, "blk.0.ffn_down.weight"), DType::kF16);  // rows of 344
  }
  MakeModelOptions hf;
  hf.format = "hf";
  hf.dtype = "q4_k";
  hf.out_dir = "/tmp/unused";
  EXPECT_EQ(MakeModel(hf).code(), absl::StatusCode::kInvalidArgument);
}

TEST(MakeModelTest, RejectsBadOptions) {
  MakeModelOptions o;
  o.out_dir = "/tmp/unused";
  o.preset = "giant";
  EXPECT_EQ(MakeModel(o).code(), absl::StatusCode::kInvalidArgument);
  o.preset = "tiny";
  o.format = "onnx";
  EXPECT_EQ(MakeModel(o).code(), absl::StatusCode::kInvalidArgument);
  o.format = "hf";
  o.dtype = "q8_0";
  EXPECT_EQ(MakeModel(o).code(), absl::StatusCode::kInvalidArgument);
}

TEST(MakeModelTest, CommandLine) {
  testing::ScratchDir dir;
  std::string out = dir.File("cli");
  std::vector<std::string> args = {"make-model", "--out", out, "--preset=tiny", "--format", "gguf",
                                   "--dtype", "f16", "--seed", "5", "--tie-embeddings"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  EXPECT_EQ(RunMakeModel(static_cast<int>(argv.size()), argv.data()), 0);
  EXPECT_TRUE(GgufFile::Open(out + "/model.gguf").ok());
  std::vector<std::string> bad = {"make-model", "--out", out, "--bogus"};
  std::vector<char*> bad_argv;
  for (std::string& a : bad) bad_argv.push_back(a.data());
  EXPECT_EQ(RunMakeModel(static_cast<int>(bad_argv.size()), bad_argv.data()), 2);
}

// The NumPy reference reads what make-model writes (HF layout, Qwen2 biases,
// tied embeddings, bf16) and gives finite logits of the right shape.
TEST(MakeModelTest, ReferenceForwardReadsTheModel) {
  if (std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with numpy is not available";
  }
  testing::ScratchDir dir;
  MakeModelOptions o;
  o.out_dir = dir.File("m");
  o.qwen2_bias = true;
  o.tie_embeddings = true;
  o.dtype = "bf16";
  ASSERT_TRUE(MakeModel(o).ok());
  const std::string out = dir.File("logits.bin");
  const std::string cmd = std::string("/usr/bin/python3 ") + FERRY_SOURCE_DIR +
                          "/tests/reference/llama_ref.py --model " + o.out_dir +
                          " --ids 1020,40,300,7 --out " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::vector<uint8_t> bytes = testing::ReadBytes(out);
  ASSERT_EQ(bytes.size(), 4u * 1024 * 4);
  std::vector<float> logits(4 * 1024);
  std::memcpy(logits.data(), bytes.data(), bytes.size());
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  EXPECT_NE(logits[0], logits[1024]);
}

}  // namespace
}  // namespace ferry
