// Regenerates the seed corpus under tests/fuzz/corpus/: small valid files
// from the writers plus truncated and corrupted variants.
//   make_corpus tests/fuzz/corpus
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "engine/formats/gguf_writer.h"
#include "engine/formats/safetensors_writer.h"
#include "ferry/v1/scheduler.pb.h"
#include "ferry/v1/worker.pb.h"

namespace {

using namespace ferry;
using Bytes = std::vector<uint8_t>;
namespace fs = std::filesystem;

Bytes Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void Write(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
}

std::vector<float> Values(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(static_cast<float>(i));
  return v;
}

// Writes truncated copies of `b` and copies with single bytes changed.
void Variants(const fs::path& dir, const std::string& stem, const Bytes& b) {
  for (size_t cut : {size_t{0}, size_t{4}, size_t{9}, b.size() / 3, b.size() / 2, b.size() - 1}) {
    Write(dir / (stem + "_cut" + std::to_string(cut)), Bytes(b.begin(), b.begin() + cut));
  }
  for (size_t at : {size_t{5}, size_t{8}, size_t{16}, size_t{24}, b.size() / 4, b.size() / 3}) {
    Bytes c = b;
    c[at] ^= 0xff;
    Write(dir / (stem + "_flip" + std::to_string(at)), c);
  }
}

void MakeGguf(const fs::path& dir) {
  const fs::path tmp = dir / "tmp.gguf";
  {
    GgufWriter w(tmp.string());  // metadata only
    w.SetString("general.architecture", "llama");
    w.SetU8("a.u8", 1);
    w.SetI8("a.i8", -1);
    w.SetU16("a.u16", 2);
    w.SetI16("a.i16", -2);
    w.SetI32("a.i32", -3);
    w.SetU64("a.u64", 4);
    w.SetI64("a.i64", -4);
    w.SetF32("a.f32", 0.5f);
    w.SetF64("a.f64", 0.25);
    w.SetBool("a.bool", true);
    std::vector<std::string> strs = {"<s>", "\xc4\xa0the", ""};
    w.SetStringArray("a.strs", strs);
    std::vector<int32_t> ints = {1, 2, 3};
    w.SetI32Array("a.ints", ints);
    std::vector<float> floats = {0.5f, 1.5f};
    w.SetF32Array("a.floats", floats);
    Check(w.Finish());
  }
  Write(dir / "metadata_only.gguf", Read(tmp));
  {
    GgufWriter w(tmp.string());
    w.SetString("general.architecture", "llama");
    w.SetU32("llama.embedding_length", 32);
    std::vector<std::string> tokens = {"a", "b", "c", "d"};
    w.SetStringArray("tokenizer.ggml.tokens", tokens);
    Check(w.AddTensor("f32", DType::kF32, {2, 3}));
    Check(w.AddTensor("f16", DType::kF16, {5}));
    Check(w.AddTensor("bf16", DType::kBF16, {2, 2, 2}));
    Check(w.AddTensor("q8", DType::kQ8_0, {2, 32}));
    Check(w.Begin());
    for (auto [name, dtype, n] : {std::tuple{"f32", DType::kF32, 6}, std::tuple{"f16", DType::kF16, 5},
                                  std::tuple{"bf16", DType::kBF16, 8}, std::tuple{"q8", DType::kQ8_0, 64}}) {
      auto bytes = EncodeFromF32(dtype, Values(n));
      Check(bytes.status());
      Check(w.WriteTensor(name, *bytes));
    }
    Check(w.Finish());
  }
  Bytes tensors = Read(tmp);
  Write(dir / "tensors.gguf", tensors);
  Variants(dir, "tensors.gguf", tensors);
  Bytes v2 = tensors;
  v2[4] = 2;  // version 2 reads the same way
  Write(dir / "tensors_v2.gguf", v2);
  fs::remove(tmp);
}

void MakeSafetensors(const fs::path& dir) {
  const fs::path tmp = dir / "tmp.safetensors";
  std::vector<uint8_t> f32 = *EncodeFromF32(DType::kF32, Values(6));
  std::vector<uint8_t> bf16 = *EncodeFromF32(DType::kBF16, Values(4));
  std::vector<uint8_t> f16 = *EncodeFromF32(DType::kF16, Values(1));
  std::vector<uint8_t> i64(16, 1);
  std::vector<SafetensorsTensorData> t = {
      {{"model.embed_tokens.weight", DType::kF32, {2, 3}}, f32},
      {{"model.norm.weight", DType::kBF16, {4}}, bf16},
      {{"scalar", DType::kF16, {}}, f16},
      {{"empty", DType::kF32, {0, 3}}, {}},
      {{"ids", DType::kI64, {2}}, i64},
  };
  Check(WriteSafetensors(tmp.string(), t, {{"format", "pt"}}));
  Bytes valid = Read(tmp);
  Write(dir / "valid.safetensors", valid);
  Variants(dir, "valid.safetensors", valid);
  auto raw = [](const std::string& header, size_t data) {
    Bytes b(8);
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(header.size() >> (8 * i));
    b.insert(b.end(), header.begin(), header.end());
    b.resize(b.size() + data, 0x3f);
    return b;
  };
  Write(dir / "empty_header.safetensors", raw("{}", 0));
  Write(dir / "overlap.safetensors",
        raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
  Write(dir / "outside.safetensors",
        raw(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 16));
  Write(dir / "mismatch.safetensors",
        raw(R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}})", 16));
  Write(dir / "nested.safetensors", raw(std::string(200, '[') + std::string(200, ']'), 0));
  fs::remove(tmp);
}

// [selector byte][message bytes]
Bytes Tagged(uint8_t tag, const google::protobuf::MessageLite& m) {
  const std::string body = m.SerializeAsString();
  Bytes b = {tag};
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

void MakeWorkerRequest(const fs::path& dir) {
  v1::GenerateRequest plain;
  plain.set_request_id("seed");
  for (int i = 1; i <= 8; ++i) plain.add_prompt_ids(i);
  plain.mutable_params()->set_max_tokens(16);
  plain.mutable_params()->set_seed(3);
  Write(dir / "plain", Tagged(0, plain));

  v1::GenerateRequest sampled = plain;
  v1::SamplingParams* p = sampled.mutable_params();
  p->set_temperature(0.8f);
  p->set_top_k(40);
  p->set_top_p(0.9f);
  p->set_n(3);
  p->add_stop("\n\n");
  p->add_stop_token_ids(2);
  (*p->mutable_logit_bias())[7] = -5;
  p->set_logprobs(2);
  Write(dir / "sampled", Tagged(0, sampled));

  v1::GenerateRequest text;
  text.set_prompt("Once upon a time");
  Write(dir / "text_prompt", Tagged(0, text));

  v1::RequestState state;
  state.set_request_id("moved");
  for (int i = 1; i <= 20; ++i) state.add_prompt_ids(i);
  state.mutable_params()->set_max_tokens(32);
  state.mutable_params()->set_temperature(1.0f);
  state.mutable_params()->set_seed(11);
  for (int i = 0; i < 5; ++i) state.add_output_ids(30 + i);
  std::string rng(32, '\0');
  for (size_t i = 0; i < rng.size(); ++i) rng[i] = static_cast<char>(i * 37 + 1);
  state.set_sampler_rng_state(rng);
  state.set_emitted_text_bytes(9);
  state.set_cached_prompt_tokens(16);
  Write(dir / "state", Tagged(1, state));

  v1::GenerateRequest resumed = plain;
  *resumed.mutable_resume() = state;
  resumed.mutable_resume()->clear_params();
  Write(dir / "resumed", Tagged(0, resumed));

  // A reasoning model's sample moving mid-thought: its grammar waits for the
  // end of the thinking, which a budget bounds.
  v1::RequestState thinking = state;
  thinking.mutable_params()->mutable_structured()->set_regex("[0-9]+");
  v1::ReasoningBounds* bounds = thinking.mutable_params()->mutable_reasoning();
  bounds->set_start("<think>");
  bounds->set_end("</think>");
  bounds->set_budget_tokens(12);
  Write(dir / "state_thinking", Tagged(1, thinking));

  v1::RequestState bad = state;
  bad.set_cached_prompt_tokens(21);
  Write(dir / "state_cached_past_prompt", Tagged(1, bad));
  bad = state;
  bad.set_sampler_rng_state(std::string(32, '\0'));
  Write(dir / "state_zero_rng", Tagged(1, bad));
  bad = state;
  bad.add_output_ids(-4);
  Write(dir / "state_bad_output", Tagged(1, bad));
}

// [op][u16 length][bytes] records.
void Record(Bytes& b, uint8_t op, const std::string& body) {
  b.push_back(op);
  b.push_back(static_cast<uint8_t>(body.size() & 0xff));
  b.push_back(static_cast<uint8_t>(body.size() >> 8));
  b.insert(b.end(), body.begin(), body.end());
}

void MakeSchedulerPeer(const fs::path& dir) {
  auto reg = [](const std::string& address, v1::WorkerRole role, uint64_t root) {
    v1::RegisterWorkerRequest r;
    r.set_address(address);
    r.set_role(role);
    r.set_model_id("m");
    r.set_incarnation_id(address + "-1");
    r.mutable_kv_layout()->set_block_size(16);
    r.set_block_hash_root(root);
    return r.SerializeAsString();
  };
  auto beat = [](const std::string& id, const std::string& incarnation, int64_t free, double rate) {
    v1::HeartbeatRequest h;
    h.set_worker_id(id);
    h.set_incarnation_id(incarnation);
    v1::LoadReport* l = h.mutable_load();
    l->set_blocks_total(100);
    l->set_blocks_free(free);
    l->set_running_requests(2);
    l->set_tokens_per_second(rate);
    l->set_prefill_tokens_per_second(rate * 10);
    l->set_kv_bytes_per_block(4096);
    for (uint64_t hash = 1; hash <= 4; ++hash) l->add_stored_block_hashes(hash * 0x9E3779B97F4A7C15ULL);
    l->add_removed_block_hashes(3 * 0x9E3779B97F4A7C15ULL);
    return h.SerializeAsString();
  };
  const std::string prompt(100, 'a');
  Bytes mixed;
  Record(mixed, 0, reg("127.0.0.1:1", v1::WORKER_ROLE_MIXED, 77));
  Record(mixed, 0, reg("127.0.0.1:2", v1::WORKER_ROLE_MIXED, 77));
  Record(mixed, 1, beat("w0", "127.0.0.1:1-1", 50, 100));
  Record(mixed, 1, beat("w1", "127.0.0.1:2-1", 90, 200));
  Record(mixed, 4, prompt);
  Record(mixed, 3, std::string(1, '\1'));
  Record(mixed, 4, prompt);
  Write(dir / "two_mixed", mixed);

  Bytes pd;
  Record(pd, 0, reg("127.0.0.1:3", v1::WORKER_ROLE_PREFILL, 5));
  Record(pd, 0, reg("127.0.0.1:4", v1::WORKER_ROLE_DECODE, 5));
  Record(pd, 1, beat("w0", "127.0.0.1:3-1", -7, std::nan("")));
  Record(pd, 1, beat("w1", "127.0.0.1:4-1", 500, -1));
  Record(pd, 4, prompt);
  Record(pd, 2, std::string("\x0f\xff", 2));
  Record(pd, 4, prompt);
  Write(dir / "prefill_decode_bad_loads", pd);
}

void PutI32(Bytes* b, int32_t v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b->insert(b->end(), p, p + 4);
}

void PutF32s(Bytes* b, size_t n) {
  for (float v : Values(n)) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b->insert(b->end(), p, p + 4);
  }
}

// llama2.c checkpoints: legacy with its own classifier, version 1 shared.
void MakeLlama2c(const fs::path& dir) {
  const int32_t dim = 8, hidden = 12, layers = 1, heads = 2, kv_heads = 1, vocab = 5, seq = 4;
  const size_t kv = kv_heads * (dim / heads);
  const size_t weights =
      layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim) + vocab * dim + dim;
  Bytes legacy;
  for (int32_t v : {dim, hidden, layers, heads, kv_heads, -vocab, seq}) PutI32(&legacy, v);
  PutF32s(&legacy, weights + 2 * seq * (dim / heads / 2) + vocab * dim);
  Write(dir / "legacy_unshared.bin", legacy);
  Variants(dir, "legacy_unshared.bin", legacy);
  Bytes v1;
  for (int32_t v : {0x616b3432, 1, dim, hidden, layers, heads, kv_heads, vocab, seq})
    PutI32(&v1, v);
  v1.push_back(1);
  v1.resize(256, 0);
  PutF32s(&v1, weights);
  Write(dir / "v1_shared.bin", v1);
  Variants(dir, "v1_shared.bin", v1);
}

void PutVarint(Bytes* b, uint64_t v) {
  while (v >= 0x80) {
    b->push_back(static_cast<uint8_t>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  b->push_back(static_cast<uint8_t>(v));
}

void PutField(Bytes* b, int field, const Bytes& bytes) {
  PutVarint(b, static_cast<uint64_t>(field) << 3 | 2);
  PutVarint(b, bytes.size());
  b->insert(b->end(), bytes.begin(), bytes.end());
}

// tokenizer.model (first byte 0) and tokenizer.bin (first byte odd: the
// vocabulary size to read, times two, plus one).
void MakeSentencePiece(const fs::path& dir) {
  const std::vector<std::tuple<std::string, float, int>> pieces = {
      {"<unk>", 0, 2},  {"<s>", 0, 3},
      {"</s>", 0, 3},   {"<0x0A>", 0, 6},
      {"<0x41>", 0, 6}, {"\xE2\x96\x81t", -1, 1},
      {"he", -2, 1},    {"\xE2\x96\x81the", -3, 1}};
  Bytes model = {0};
  for (const auto& [text, score, type] : pieces) {
    Bytes msg;
    PutField(&msg, 1, Bytes(text.begin(), text.end()));
    PutVarint(&msg, 2 << 3 | 5);
    const auto* p = reinterpret_cast<const uint8_t*>(&score);
    msg.insert(msg.end(), p, p + 4);
    PutVarint(&msg, 3 << 3);
    PutVarint(&msg, static_cast<uint64_t>(type));
    PutField(&model, 1, msg);
  }
  Bytes trainer;
  PutVarint(&trainer, 3 << 3);
  PutVarint(&trainer, 2);  // BPE
  PutVarint(&trainer, 43 << 3);
  PutVarint(&trainer, ~uint64_t{0});  // pad_id -1
  PutField(&model, 2, trainer);
  Bytes normalizer;
  PutVarint(&normalizer, 3 << 3);
  PutVarint(&normalizer, 1);
  PutField(&model, 3, normalizer);
  Write(dir / "model_bpe", model);
  Variants(dir, "model_bpe", model);

  Bytes bin = {1};  // read to the end
  PutI32(&bin, 6);
  for (const char* text : {"<unk>", "\n<s>\n", "\n</s>\n", "<0x0A>", " t", "he", " the"}) {
    const float score = -1;
    const auto* p = reinterpret_cast<const uint8_t*>(&score);
    bin.insert(bin.end(), p, p + 4);
    PutI32(&bin, static_cast<int32_t>(std::strlen(text)));
    bin.insert(bin.end(), text, text + std::strlen(text));
  }
  Write(dir / "llama2c_vocab", bin);
  Variants(dir, "llama2c_vocab", bin);
  Bytes first4 = bin;
  first4[0] = 4 * 2 + 1;
  Write(dir / "llama2c_vocab_first4", first4);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  fs::path root(argv[1]);
  fs::create_directories(root / "gguf");
  fs::create_directories(root / "safetensors");
  MakeGguf(root / "gguf");
  MakeSafetensors(root / "safetensors");
  fs::create_directories(root / "llama2c");
  fs::create_directories(root / "sentencepiece");
  MakeLlama2c(root / "llama2c");
  MakeSentencePiece(root / "sentencepiece");
  fs::create_directories(root / "worker_request");
  fs::create_directories(root / "scheduler_peer");
  MakeWorkerRequest(root / "worker_request");
  MakeSchedulerPeer(root / "scheduler_peer");
  return 0;
}
