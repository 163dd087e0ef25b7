#include "tools/make_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "engine/formats/dtype.h"
#include "engine/formats/gguf_writer.h"
#include "engine/formats/safetensors_writer.h"
#include "nlohmann/json.hpp"
#include "tools/flags.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

// Plain English prose written for this generator (no outside source), so the
// learned merges look like a real English vocabulary: common words become
// single tokens and rarer ones split into pieces.
constexpr std::string_view kCorpus = R"(The old lighthouse stood at the end of the rocky point, where the river met the sea. For many years a keeper named Thomas lived there with his daughter, Ada, and a grey cat that slept on the warm stones near the lamp. Every evening they climbed the one hundred and twelve steps to light the great lamp, and every morning they climbed them again to put it out.
Ada liked to count things. She counted the ships that passed in the morning and the ships that passed at night. She counted the gulls on the roof, the waves that broke on the rocks, and the stars that came out one by one above the water. In the spring of 1907 she counted 3,482 ships, and she wrote the number in a small green book that she kept under her pillow.
"Why do you count them?" her father asked one day.
"Because the sea is too big to understand," she said, "but a number is small enough to hold."
Thomas laughed, but he didn't forget what she had said. He thought about it when the storms came in the autumn and the wind shook the windows of the tower. He thought about it when the fog rolled in so thick that he couldn't see his own hand. On those nights the lamp was the only thing that mattered, and he kept it burning until the grey light of morning.
The town on the other side of the river was small but busy. There was a baker who made bread before the sun came up, a smith who worked with iron and fire, and a teacher who taught the children to read and write. There was a market every Saturday, where farmers sold apples, cheese, eggs, honey and wool. The children ran between the stalls and the dogs followed them, hoping for something to eat.
In the winter the river froze near the banks, and the children skated on the ice while their parents watched from the shore. They built fires and drank hot tea, and they told stories about the long winters of the past, when the snow was so deep that people walked out of their upper windows.
Ada went to school in the town. She learned about numbers and letters, about rivers and mountains, about the planets that move around the sun. She learned that light travels faster than anything else, and that the light from some stars has been travelling for thousands of years before it reaches our eyes. She thought that was the most wonderful thing she had ever heard.
"So when I look at a star," she said to her teacher, "I'm looking at the past?"
"Yes," said the teacher. "You're seeing the star as it was, not as it is."
That night Ada stood at the top of the lighthouse and looked at the sky for a long time. Then she looked at the lamp, and she understood that the ships far out at sea were seeing the lamp as it had been a moment before. It was a very small moment, but it was still the past.
Years went by. Thomas grew old and his hands grew slow, and Ada took over more of the work. She cleaned the glass, trimmed the wick, wound the clockwork that turned the lens, and wrote in the log book every night: the weather, the wind, the number of ships. She had counted more than forty thousand ships by then.
One night in November a great storm came from the west. The rain fell sideways and the waves climbed higher than the rocks. At midnight the clockwork stopped, and the lens no longer turned. Without the turning light, the ships would not know which lighthouse they were seeing, and they might steer onto the rocks.
Ada did not wait. She took the handle of the clockwork and turned it by hand, slowly and steadily, counting each turn so that the light would flash at the right rhythm: one, two, three, four, and then a pause. She turned it for six hours, until her arms ached and the sky grew pale in the east.
In the morning the storm was over. Three ships had passed the point safely in the night, and their captains came to the lighthouse to thank the keeper. They found Thomas asleep in his chair and Ada asleep on the floor beside the clockwork, with the small green book open in her hand. On the last page she had written: 2,160 turns, 3 ships, 0 lost.
People in the town still talk about that night. They say that the lighthouse is an old and simple machine, made of stone and glass and iron, but that it only works because someone is willing to keep it working. They say that counting is a kind of care. And when the fog comes in from the sea and the horn sounds across the water, they look toward the point and they see the light, turning and turning, as it has for a hundred years.
Questions and answers. What is the capital of France? The capital of France is Paris. How many days are in a week? There are seven days in a week. What color is the sky on a clear day? The sky is blue. Which is larger, 12 or 21? The number 21 is larger than 12. What do bees make? Bees make honey. Where does the sun rise? The sun rises in the east and sets in the west.
A short recipe for bread: mix 500 grams of flour, 10 grams of salt, 7 grams of yeast and 350 grams of warm water. Knead the dough for ten minutes, let it rise for one hour, shape it, let it rise again, and bake it at 220 degrees for about 30 minutes. Let it cool before you cut it.
)";

// --- Byte-level BPE -------------------------------------------------------

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}
bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

// 0: letter, 1: digit, 2: other non-space.
int CharClass(char c) { return IsAsciiLetter(c) ? 0 : IsAsciiDigit(c) ? 1 : 2; }

size_t MatchContraction(std::string_view text, size_t i) {
  if (text[i] != '\'' || i + 1 >= text.size()) return 0;
  for (std::string_view c : {"re", "ve", "ll"}) {
    if (text.substr(i + 1, 2) == c) return 3;
  }
  char n = text[i + 1];
  return (n == 's' || n == 't' || n == 'm' || n == 'd') ? 2 : 0;
}

}  // namespace

std::vector<std::string> PreTokenizeAscii(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    size_t end;
    if (size_t len = MatchContraction(text, i); len != 0) {
      end = i + len;
    } else if (IsAsciiSpace(text[i]) && !(text[i] == ' ' && i + 1 < n && !IsAsciiSpace(text[i + 1]))) {
      // A run of spaces; its last character is left for the next word when
      // one follows (the regex's \s+(?!\S)).
      size_t k = i;
      while (k < n && IsAsciiSpace(text[k])) ++k;
      end = (k < n && k - i > 1) ? k - 1 : k;
    } else {
      size_t start = text[i] == ' ' ? i + 1 : i;
      int cls = CharClass(text[start]);
      end = start + 1;
      while (end < n && !IsAsciiSpace(text[end]) && CharClass(text[end]) == cls) ++end;
    }
    out.emplace_back(text.substr(i, end - i));
    i = end;
  }
  return out;
}

std::string ByteLevelChar(uint8_t byte) {
  // Printable Latin-1 bytes stand for themselves; the rest are shifted to
  // U+0100 + k in byte order so that every byte has a visible character.
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  uint32_t cp = byte;
  if (!printable(byte)) {
    int k = 0;
    for (int b = 0; b < byte; ++b) k += printable(b) ? 0 : 1;
    cp = 0x100 + k;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

ByteLevelBpeVocab TrainByteLevelBpe(int vocab_size) {
  static constexpr const char* kSpecials[] = {"<|begin_of_text|>", "<|end_of_text|>",
                                              "<|im_start|>", "<|im_end|>"};
  constexpr int kNumSpecials = 4;
  ByteLevelBpeVocab v;
  std::unordered_map<std::string, int32_t> ids;
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(ByteLevelChar(static_cast<uint8_t>(b)));
    ids.emplace(v.tokens.back(), b);
  }

  // Unique pre-tokenized words with their counts, as symbol sequences. A
  // std::map keeps the order (and so the tie-breaks below) deterministic.
  std::map<std::string, int64_t> word_counts;
  for (std::string& w : PreTokenizeAscii(kCorpus)) ++word_counts[w];
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> counts;
  for (const auto& [w, c] : word_counts) {
    std::vector<int32_t> syms;
    for (unsigned char ch : w) syms.push_back(ch);
    words.push_back(std::move(syms));
    counts.push_back(c);
  }

  const size_t target = static_cast<size_t>(std::max(vocab_size - kNumSpecials, 256));
  while (v.tokens.size() < target) {
    std::unordered_map<uint64_t, int64_t> pair_counts;
    for (size_t w = 0; w < words.size(); ++w) {
      for (size_t i = 0; i + 1 < words[w].size(); ++i) {
        uint64_t key = (uint64_t{static_cast<uint32_t>(words[w][i])} << 32) |
                       static_cast<uint32_t>(words[w][i + 1]);
        pair_counts[key] += counts[w];
      }
    }
    if (pair_counts.empty()) break;  // every word is one token: corpus exhausted
    // Most frequent pair; ties go to the smallest ids.
    uint64_t best = 0;
    int64_t best_count = -1;
    for (const auto& [key, c] : pair_counts) {
      if (c > best_count || (c == best_count && key < best)) {
        best = key;
        best_count = c;
      }
    }
    int32_t left = static_cast<int32_t>(best >> 32);
    int32_t right = static_cast<int32_t>(best & 0xffffffffu);
    std::string merged = v.tokens[left] + v.tokens[right];
    v.merges.push_back(v.tokens[left] + " " + v.tokens[right]);
    // Two different splits can spell the same token; it keeps one id.
    auto [it, inserted] = ids.emplace(merged, static_cast<int32_t>(v.tokens.size()));
    if (inserted) v.tokens.push_back(merged);
    int32_t merged_id = it->second;
    for (std::vector<int32_t>& syms : words) {
      size_t out = 0;
      for (size_t i = 0; i < syms.size(); ++i) {
        if (i + 1 < syms.size() && syms[i] == left && syms[i + 1] == right) {
          syms[out++] = merged_id;
          ++i;
        } else {
          syms[out++] = syms[i];
        }
      }
      syms.resize(out);
    }
  }

  v.special.assign(v.tokens.size(), false);
  for (int s = 0; s < kNumSpecials; ++s) {
    v.tokens.push_back(kSpecials[s]);
    v.special.push_back(true);
  }
  int32_t first_special = static_cast<int32_t>(v.tokens.size()) - kNumSpecials;
  v.bos_id = first_special;
  v.eos_id = first_special + 1;
  v.im_start_id = first_special + 2;
  v.im_end_id = first_special + 3;
  for (int r = 0; static_cast<int>(v.tokens.size()) < vocab_size; ++r) {
    v.tokens.push_back(absl::StrCat("<|reserved_", r, "|>"));
    v.special.push_back(true);
  }
  return v;
}

absl::StatusOr<ModelPreset> FindModelPreset(std::string_view name) {
  ModelPreset p;
  p.name = std::string(name);
  if (name == "tiny") {
    // About 1M parameters; the FFN width is deliberately not a multiple of 32
    // (Q8_0 blocks), as in real models whose odd widths must fall back.
    p.hidden_size = 128, p.num_layers = 4, p.num_heads = 4, p.num_kv_heads = 2, p.head_dim = 32;
    p.intermediate_size = 344, p.vocab_size = 1024;
  } else if (name == "mini") {
    // About 1.3M parameters with every matrix width a multiple of 256, so
    // each one splits into k-quant (Q4_K, Q6_K) blocks.
    p.hidden_size = 256, p.num_layers = 2, p.num_heads = 4, p.num_kv_heads = 2, p.head_dim = 64;
    p.intermediate_size = 512, p.vocab_size = 1024;
  } else if (name == "small") {
    p.hidden_size = 768, p.num_layers = 12, p.num_heads = 12, p.num_kv_heads = 4, p.head_dim = 64;
    p.intermediate_size = 2048, p.vocab_size = 32000;
  } else if (name == "medium") {
    p.hidden_size = 2048, p.num_layers = 22, p.num_heads = 32, p.num_kv_heads = 4, p.head_dim = 64;
    p.intermediate_size = 5632, p.vocab_size = 32000;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown preset '", std::string(name), "' (tiny, mini, small, medium)"));
  }
  return p;
}

namespace {

// --- Weights ----------------------------------------------------------------

enum class TensorKind { kMatrix, kNorm, kBias };

struct TensorPlan {
  std::string hf_name;
  std::string gguf_name;
  std::vector<uint64_t> shape;  // row-major, HF orientation ([out, in])
  TensorKind kind = TensorKind::kMatrix;
  // Q and K (weights and biases) are permuted for GGUF's interleaved RoPE;
  // this is their number of heads, 0 for other tensors.
  int rope_heads = 0;

  uint64_t NumElements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
  }
};

std::vector<TensorPlan> PlanTensors(const ModelPreset& p, bool bias, bool tied) {
  const uint64_t h = p.hidden_size, ff = p.intermediate_size, v = p.vocab_size;
  const uint64_t q = uint64_t(p.num_heads) * p.head_dim, kv = uint64_t(p.num_kv_heads) * p.head_dim;
  std::vector<TensorPlan> t;
  t.push_back({"model.embed_tokens.weight", "token_embd.weight", {v, h}, TensorKind::kMatrix, 0});
  for (int l = 0; l < p.num_layers; ++l) {
    std::string hf = absl::StrCat("model.layers.", l, ".");
    std::string gg = absl::StrCat("blk.", l, ".");
    t.push_back({hf + "input_layernorm.weight", gg + "attn_norm.weight", {h}, TensorKind::kNorm, 0});
    t.push_back({hf + "self_attn.q_proj.weight", gg + "attn_q.weight", {q, h}, TensorKind::kMatrix,
                 p.num_heads});
    t.push_back({hf + "self_attn.k_proj.weight", gg + "attn_k.weight", {kv, h}, TensorKind::kMatrix,
                 p.num_kv_heads});
    t.push_back({hf + "self_attn.v_proj.weight", gg + "attn_v.weight", {kv, h}, TensorKind::kMatrix, 0});
    if (bias) {
      t.push_back({hf + "self_attn.q_proj.bias", gg + "attn_q.bias", {q}, TensorKind::kBias,
                   p.num_heads});
      t.push_back({hf + "self_attn.k_proj.bias", gg + "attn_k.bias", {kv}, TensorKind::kBias,
                   p.num_kv_heads});
      t.push_back({hf + "self_attn.v_proj.bias", gg + "attn_v.bias", {kv}, TensorKind::kBias, 0});
    }
    t.push_back({hf + "self_attn.o_proj.weight", gg + "attn_output.weight", {h, q},
                 TensorKind::kMatrix, 0});
    t.push_back({hf + "post_attention_layernorm.weight", gg + "ffn_norm.weight", {h},
                 TensorKind::kNorm, 0});
    t.push_back({hf + "mlp.gate_proj.weight", gg + "ffn_gate.weight", {ff, h}, TensorKind::kMatrix, 0});
    t.push_back({hf + "mlp.up_proj.weight", gg + "ffn_up.weight", {ff, h}, TensorKind::kMatrix, 0});
    t.push_back({hf + "mlp.down_proj.weight", gg + "ffn_down.weight", {h, ff}, TensorKind::kMatrix, 0});
  }
  t.push_back({"model.norm.weight", "output_norm.weight", {h}, TensorKind::kNorm, 0});
  if (!tied) t.push_back({"lm_head.weight", "output.weight", {v, h}, TensorKind::kMatrix, 0});
  return t;
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t HashName(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Fills `out` with N(0, 1) values (Box-Muller). Each chunk has its own
// stream derived from (seed, tensor name, chunk), so the values do not depend
// on the order tensors are written in or on the number of threads.
void FillNormal(uint64_t seed, std::string_view name, std::span<float> out) {
  constexpr size_t kChunk = size_t{1} << 20;
  const size_t num_chunks = (out.size() + kChunk - 1) / kChunk;
  uint64_t base = seed;
  base = SplitMix64(base) ^ HashName(name);
  auto fill_chunk = [&](size_t c) {
    uint64_t state = base + c * 0x632be59bd9b4e019ull;
    SplitMix64(state);
    size_t begin = c * kChunk, end = std::min(out.size(), begin + kChunk);
    for (size_t i = begin; i < end; i += 2) {
      double u1 = (static_cast<double>(SplitMix64(state) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
      double u2 = static_cast<double>(SplitMix64(state) >> 11) * 0x1.0p-53;        // [0, 1)
      double r = std::sqrt(-2.0 * std::log(u1));
      double a = 2.0 * M_PI * u2;
      out[i] = static_cast<float>(r * std::cos(a));
      if (i + 1 < end) out[i + 1] = static_cast<float>(r * std::sin(a));
    }
  };
  const size_t num_threads =
      std::min<size_t>(num_chunks, std::max(1u, std::min(8u, std::thread::hardware_concurrency())));
  if (num_threads <= 1) {
    for (size_t c = 0; c < num_chunks; ++c) fill_chunk(c);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < num_threads; ++t) {
    threads.emplace_back([&] {
      for (size_t c = next++; c < num_chunks; c = next++) fill_chunk(c);
    });
  }
  for (std::thread& th : threads) th.join();
}

// The tensor's f32 values in HF order.
std::vector<float> GenerateTensor(uint64_t seed, const TensorPlan& t) {
  std::vector<float> v(t.NumElements());
  FillNormal(seed, t.hf_name, v);
  constexpr float kStd = 0.02f;
  for (float& x : v) x *= kStd;
  if (t.kind == TensorKind::kNorm) {
    for (float& x : v) x += 1.0f;
  }
  return v;
}

// Reorders the rows of a Q/K weight (or bias) from HF's half-split RoPE
// layout to GGUF llama's interleaved pairs: rows viewed as
// (heads, 2, head_dim/2) become (heads, head_dim/2, 2).
std::vector<float> PermuteForInterleavedRope(const std::vector<float>& in, int heads,
                                             uint64_t rows, uint64_t cols) {
  std::vector<float> out(in.size());
  const uint64_t head_dim = rows / heads, half = head_dim / 2;
  for (uint64_t h = 0; h < static_cast<uint64_t>(heads); ++h) {
    for (uint64_t j = 0; j < half; ++j) {
      for (uint64_t s = 0; s < 2; ++s) {
        uint64_t dst = h * head_dim + j * 2 + s;
        uint64_t src = h * head_dim + s * half + j;
        std::memcpy(&out[dst * cols], &in[src * cols], cols * sizeof(float));
      }
    }
  }
  return out;
}

std::string TorchDTypeName(DType d) {
  switch (d) {
    case DType::kF16: return "float16";
    case DType::kBF16: return "bfloat16";
    default: return "float32";
  }
}

constexpr std::string_view kChatTemplate =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

absl::Status WriteTextFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path.string(), ": write failed"));
  return absl::OkStatus();
}

ordered_json HfConfig(const ModelPreset& p, const MakeModelOptions& o, DType dtype,
                      const ByteLevelBpeVocab& vocab) {
  ordered_json c;
  c["architectures"] = {o.qwen2_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  c["model_type"] = o.qwen2_bias ? "qwen2" : "llama";
  c["hidden_size"] = p.hidden_size;
  c["intermediate_size"] = p.intermediate_size;
  c["num_hidden_layers"] = p.num_layers;
  c["num_attention_heads"] = p.num_heads;
  c["num_key_value_heads"] = p.num_kv_heads;
  c["head_dim"] = p.head_dim;
  c["hidden_act"] = "silu";
  c["rms_norm_eps"] = p.rms_norm_eps;
  c["rope_theta"] = p.rope_theta;
  c["max_position_embeddings"] = p.max_position_embeddings;
  c["vocab_size"] = p.vocab_size;
  c["tie_word_embeddings"] = o.tie_embeddings;
  c["attention_bias"] = o.qwen2_bias;
  c["torch_dtype"] = TorchDTypeName(dtype);
  c["bos_token_id"] = vocab.bos_id;
  c["eos_token_id"] = vocab.eos_id;
  return c;
}

ordered_json HfTokenizer(const ByteLevelBpeVocab& vocab) {
  ordered_json added = ordered_json::array();
  ordered_json model_vocab = ordered_json::object();
  auto& vocab_entries = model_vocab.get_ref<ordered_json::object_t&>();
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    // Appended directly (tokens are unique): operator[] on an ordered_json
    // object searches linearly, quadratic for a 32000-token vocabulary.
    vocab_entries.emplace_back(vocab.tokens[id], id);
    if (vocab.special[id]) {
      added.push_back({{"id", id}, {"content", vocab.tokens[id]}, {"single_word", false},
                       {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                       {"special", true}});
    }
  }
  const std::string& bos = vocab.tokens[vocab.bos_id];
  ordered_json t;
  t["version"] = "1.0";
  t["truncation"] = nullptr;
  t["padding"] = nullptr;
  t["added_tokens"] = added;
  t["normalizer"] = nullptr;
  // use_regex: the GPT-2 pre-tokenizer regex (kGpt2PreTokenizerRegex).
  t["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false},
                        {"trim_offsets", true}, {"use_regex", true}};
  // BOS before each sequence, as add_bos_token says.
  t["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{bos, {{"id", bos}, {"ids", {vocab.bos_id}}, {"tokens", {bos}}}}}}};
  t["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
                  {"use_regex", true}};
  t["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                {"vocab", model_vocab}, {"merges", vocab.merges}};
  return t;
}

ordered_json HfTokenizerConfig(const ByteLevelBpeVocab& vocab, int max_len) {
  ordered_json decoder = ordered_json::object();
  auto& decoder_entries = decoder.get_ref<ordered_json::object_t&>();
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    if (!vocab.special[id]) continue;
    ordered_json entry = {{"content", vocab.tokens[id]}, {"lstrip", false},
                          {"normalized", false},         {"rstrip", false},
                          {"single_word", false},        {"special", true}};
    decoder_entries.emplace_back(std::to_string(id), std::move(entry));
  }
  ordered_json c;
  c["add_bos_token"] = true;
  c["add_eos_token"] = false;
  c["added_tokens_decoder"] = decoder;
  c["bos_token"] = vocab.tokens[vocab.bos_id];
  c["eos_token"] = vocab.tokens[vocab.eos_id];
  c["pad_token"] = nullptr;
  c["chat_template"] = std::string(kChatTemplate);
  c["clean_up_tokenization_spaces"] = false;
  c["model_max_length"] = max_len;
  c["tokenizer_class"] = "PreTrainedTokenizerFast";
  return c;
}

// --- Writing ------------------------------------------------------------

struct WriteContext {
  const MakeModelOptions& options;
  const ModelPreset& preset;
  const ByteLevelBpeVocab& vocab;
  DType dtype;
  std::vector<TensorPlan> plan;
};

absl::Status WriteHf(const WriteContext& ctx) {
  const fs::path dir(ctx.options.out_dir);
  std::vector<SafetensorsTensorSpec> specs;
  for (const TensorPlan& t : ctx.plan) specs.push_back({t.hf_name, ctx.dtype, t.shape});
  const std::string path = (dir / "model.safetensors").string();
  FERRY_ASSIGN_OR_RETURN(auto writer,
                         SafetensorsWriter::Create(path, std::move(specs), {{"format", "pt"}}));
  ProgressBar bar("writing model.safetensors", static_cast<int64_t>(writer->file_size()),
                  ctx.options.show_progress && ProgressBar::StderrIsTerminal());
  for (const TensorPlan& t : ctx.plan) {
    std::vector<float> values = GenerateTensor(ctx.options.seed, t);
    FERRY_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, EncodeFromF32(ctx.dtype, values));
    FERRY_RETURN_IF_ERROR(writer->WriteTensor(t.hf_name, bytes));
    bar.Add(static_cast<int64_t>(bytes.size()));
  }
  FERRY_RETURN_IF_ERROR(writer->Finish());
  bar.Finish();

  FERRY_RETURN_IF_ERROR(WriteTextFile(
      dir / "config.json", HfConfig(ctx.preset, ctx.options, ctx.dtype, ctx.vocab).dump(2) + "\n"));
  FERRY_RETURN_IF_ERROR(WriteTextFile(dir / "tokenizer.json", HfTokenizer(ctx.vocab).dump(2) + "\n"));
  FERRY_RETURN_IF_ERROR(WriteTextFile(
      dir / "tokenizer_config.json",
      HfTokenizerConfig(ctx.vocab, ctx.preset.max_position_embeddings).dump(2) + "\n"));
  ordered_json gen;
  gen["bos_token_id"] = ctx.vocab.bos_id;
  gen["eos_token_id"] = ctx.vocab.eos_id;
  return WriteTextFile(dir / "generation_config.json", gen.dump(2) + "\n");
}

void SetGgufMetadata(const WriteContext& ctx, GgufWriter& w) {
  const ModelPreset& p = ctx.preset;
  uint32_t file_type = 0;
  switch (ctx.dtype) {
    case DType::kF16: file_type = 1; break;
    case DType::kQ8_0: file_type = 7; break;
    // llama.cpp's numbering: Q4_0 2, Q5_0 8, Q4_K_S 14, Q5_K_S 16, Q6_K 18
    // (the _S files: k-quant matrices, Q6_K output).
    case DType::kQ4_0:
      file_type = 2;
      break;
    case DType::kQ5_0:
      file_type = 8;
      break;
    case DType::kQ4_K:
      file_type = 14;
      break;
    case DType::kQ5_K:
      file_type = 16;
      break;
    case DType::kQ6_K:
      file_type = 18;
      break;
    case DType::kBF16: file_type = 32; break;
    default: break;
  }
  w.SetString("general.architecture", "llama");
  w.SetString("general.name", absl::StrCat("ferry-", p.name));
  w.SetU32("general.file_type", file_type);
  w.SetU32("llama.context_length", p.max_position_embeddings);
  w.SetU32("llama.embedding_length", p.hidden_size);
  w.SetU32("llama.block_count", p.num_layers);
  w.SetU32("llama.feed_forward_length", p.intermediate_size);
  w.SetU32("llama.attention.head_count", p.num_heads);
  w.SetU32("llama.attention.head_count_kv", p.num_kv_heads);
  w.SetU32("llama.attention.key_length", p.head_dim);
  w.SetU32("llama.attention.value_length", p.head_dim);
  w.SetF32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(p.rms_norm_eps));
  w.SetF32("llama.rope.freq_base", static_cast<float>(p.rope_theta));
  w.SetU32("llama.rope.dimension_count", p.head_dim);
  w.SetU32("llama.vocab_size", p.vocab_size);

  const ByteLevelBpeVocab& v = ctx.vocab;
  std::vector<int32_t> types(v.tokens.size());
  for (size_t i = 0; i < types.size(); ++i) types[i] = v.special[i] ? 3 : 1;  // control : normal
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", "gpt-2");
  w.SetStringArray("tokenizer.ggml.tokens", v.tokens);
  w.SetI32Array("tokenizer.ggml.token_type", types);
  w.SetStringArray("tokenizer.ggml.merges", v.merges);
  w.SetU32("tokenizer.ggml.bos_token_id", v.bos_id);
  w.SetU32("tokenizer.ggml.eos_token_id", v.eos_id);
  w.SetBool("tokenizer.ggml.add_bos_token", true);
  w.SetBool("tokenizer.ggml.add_eos_token", false);
  w.SetString("tokenizer.chat_template", std::string(kChatTemplate));
}

// Norms and biases stay F32. With q4_k or q5_k the output matrix (the
// embedding when tied) is Q6_K, as in llama.cpp's k-quant files. Matrices
// whose rows do not split into the type's blocks fall back as llama.cpp's
// quantizer does: Q4_K and Q5_K to Q5_0 (llama.cpp takes Q5_1 for Q5_K),
// Q6_K to Q8_0, and the 32-value types to F16.
DType GgufTensorDType(const TensorPlan& t, DType wanted, bool tied) {
  if (t.kind != TensorKind::kMatrix) return DType::kF32;
  if ((wanted == DType::kQ4_K || wanted == DType::kQ5_K) &&
      (t.gguf_name == "output.weight" || (tied && t.gguf_name == "token_embd.weight"))) {
    wanted = DType::kQ6_K;
  }
  const uint64_t cols = t.shape.back();
  if (cols % kQKValues != 0) {
    if (wanted == DType::kQ4_K || wanted == DType::kQ5_K) wanted = DType::kQ5_0;
    if (wanted == DType::kQ6_K) wanted = DType::kQ8_0;
  }
  if (BlockingOf(wanted).values > 1 && cols % BlockingOf(wanted).values != 0) return DType::kF16;
  return wanted;
}

absl::Status WriteGguf(const WriteContext& ctx) {
  const std::string path = (fs::path(ctx.options.out_dir) / "model.gguf").string();
  GgufWriter w(path);
  SetGgufMetadata(ctx, w);
  for (const TensorPlan& t : ctx.plan) {
    FERRY_RETURN_IF_ERROR(w.AddTensor(
        t.gguf_name, GgufTensorDType(t, ctx.dtype, ctx.options.tie_embeddings), t.shape));
  }
  FERRY_RETURN_IF_ERROR(w.Begin());
  ProgressBar bar("writing model.gguf", static_cast<int64_t>(w.file_size()),
                  ctx.options.show_progress && ProgressBar::StderrIsTerminal());
  for (const TensorPlan& t : ctx.plan) {
    std::vector<float> values = GenerateTensor(ctx.options.seed, t);
    if (t.rope_heads != 0) {
      uint64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
      values = PermuteForInterleavedRope(values, t.rope_heads, t.shape[0], cols);
    }
    FERRY_ASSIGN_OR_RETURN(
        std::vector<uint8_t> bytes,
        EncodeFromF32(GgufTensorDType(t, ctx.dtype, ctx.options.tie_embeddings), values));
    FERRY_RETURN_IF_ERROR(w.WriteTensor(t.gguf_name, bytes));
    bar.Add(static_cast<int64_t>(bytes.size()));
  }
  FERRY_RETURN_IF_ERROR(w.Finish());
  bar.Finish();
  return absl::OkStatus();
}

}  // namespace

absl::Status MakeModel(const MakeModelOptions& options) {
  FERRY_ASSIGN_OR_RETURN(ModelPreset preset, FindModelPreset(options.preset));
  if (options.format != "hf" && options.format != "gguf") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown format '", options.format, "' (hf, gguf)"));
  }
  std::optional<DType> dtype = ParseDType(options.dtype);
  bool gguf = options.format == "gguf";
  const bool block_quantized = dtype && IsWeightDType(*dtype) && BlockingOf(*dtype).values > 1;
  if (!dtype || !(*dtype == DType::kF32 || *dtype == DType::kF16 || *dtype == DType::kBF16 ||
                  (gguf && block_quantized))) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported dtype '", options.dtype, "' (f32, f16, bf16",
                     gguf ? ", q8_0, q4_0, q5_0, q4_k, q5_k, q6_k)"
                          : "; q8_0, q4_0, q5_0, q4_k, q5_k, q6_k with --format gguf)"));
  }
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", options.out_dir, ": ", ec.message()));
  }
  ByteLevelBpeVocab vocab = TrainByteLevelBpe(preset.vocab_size);
  WriteContext ctx{options, preset, vocab, *dtype,
                   PlanTensors(preset, options.qwen2_bias, options.tie_embeddings)};
  return gguf ? WriteGguf(ctx) : WriteHf(ctx);
}

int RunMakeModel(int argc, char** argv) {
  MakeModelOptions o;
  int64_t seed = 0;
  FlagParser flags("make-model",
                   "Writes a Llama-architecture model with deterministic random weights and a\n"
                   "byte-level BPE tokenizer (for tests and benchmarks; it generates gibberish).\n"
                   "Presets: tiny (about 1M parameters: hidden 128, 4 layers, vocab 1024), mini "
                   "(1.3M, hidden\n256: every "
                   "width splits into k-quant blocks), small (hidden 768, 12 layers, 110M), "
                   "medium (hidden 2048, 22 layers, 1.1B parameters).");
  flags.AddString("out", &o.out_dir, "output directory (required)");
  flags.AddString("preset", &o.preset, "tiny, mini, small or medium");
  flags.AddString("format", &o.format, "hf (config.json + model.safetensors + tokenizer.json) or gguf");
  flags.AddString(
      "dtype", &o.dtype,
      "f32, f16 or bf16 (gguf also q8_0, q4_0, q5_0, q4_k, q5_k, q6_k); norms stay f32 in\n"
      "gguf, and with q4_k or q5_k the output matrix is q6_k");
  flags.AddInt("seed", &seed, "random seed; the same seed gives the same weights in every format");
  flags.AddBool("qwen2-bias", &o.qwen2_bias, "Qwen2ForCausalLM with q/k/v projection biases");
  flags.AddBool("tie-embeddings", &o.tie_embeddings, "share the embedding and output matrices");
  return RunWithFlags(flags, argc, argv, [&] {
    if (o.out_dir.empty()) {
      std::fprintf(stderr, "error: --out is required\n\n%s", flags.Usage().c_str());
      return 2;
    }
    o.seed = static_cast<uint64_t>(seed);
    absl::Status s = MakeModel(o);
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    std::printf("wrote %s model (%s, %s) to %s\n", o.preset.c_str(), o.format.c_str(),
                o.dtype.c_str(), o.out_dir.c_str());
    return 0;
  });
}

}  // namespace ferry
