// `ferry generate`: one prompt through the CPU engine, streamed to stdout.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/thread_pool.h"
#include "engine/llama_forward.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "tools/builtin_model.h"
#include "tools/commands.h"
#include "tools/flags.h"

namespace ferry {
namespace {

constexpr int kBlockSize = 16;

struct GenerateFlags {
  std::string model;
  std::string prompt;
  int64_t max_tokens = 128;
  double temperature = 0.8;
  double top_p = 1.0;
  int64_t top_k = 0;
  double min_p = 0.0;
  int64_t seed = 0;
  int64_t threads = 0;
  bool print_ids = false;
  bool no_bos = false;
  std::string log_level = "warn";
};

int Generate(const GenerateFlags& f) {
  if (auto s = SetupLogging(f.log_level); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (f.max_tokens < 0) {
    std::fprintf(stderr, "error: --max-tokens must be >= 0\n");
    return 2;
  }
  std::string path = f.model;
  if (path.empty()) {
    auto builtin = EnsureBuiltinModel();
    if (!builtin.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(builtin.status().message()).c_str());
      return 1;
    }
    path = *builtin;
  }
  auto loaded = Model::Load(path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  const Model& model = **loaded;
  const Tokenizer& tok = model.tokenizer();
  std::vector<int32_t> prompt_ids = tok.Encode(f.prompt, !f.no_bos && tok.add_bos(), true);
  if (prompt_ids.empty()) {
    std::fprintf(stderr, "error: the prompt is empty (pass --prompt TEXT)\n");
    return 2;
  }
  const int ctx = model.config().max_position_embeddings;
  if (static_cast<int>(prompt_ids.size()) >= ctx) {
    std::fprintf(stderr, "error: the prompt has %zu tokens; the model's context is %d\n",
                 prompt_ids.size(), ctx);
    return 2;
  }
  int max_new = static_cast<int>(std::min<int64_t>(f.max_tokens, ctx - prompt_ids.size()));

  ThreadPool pool(static_cast<int>(f.threads));
  LlamaForward forward(model, pool);
  const int total = static_cast<int>(prompt_ids.size()) + max_new;
  const int num_blocks = (total + kBlockSize - 1) / kBlockSize;
  auto kv = KvCache::Create(forward.KvShape(kBlockSize, num_blocks));
  if (!kv.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(kv.status().message()).c_str());
    return 1;
  }
  std::vector<int32_t> blocks(num_blocks);
  for (int i = 0; i < num_blocks; ++i) blocks[i] = i;

  SamplingParams sp;
  sp.temperature = static_cast<float>(f.temperature);
  sp.top_k = static_cast<int>(f.top_k);
  sp.top_p = static_cast<float>(f.top_p);
  sp.min_p = static_cast<float>(f.min_p);
  sp.seed = static_cast<uint64_t>(f.seed);
  sp.max_tokens = std::max(1, max_new);
  if (auto s = sp.Validate(model.config().vocab_size); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  Sampler sampler(sp, sp.seed.value());
  IncrementalDetokenizer detok(tok, /*skip_special=*/true, prompt_ids.back());
  const int vocab = model.config().vocab_size;
  std::vector<float> logits(vocab);
  std::vector<int32_t> gen_ids;
  std::vector<int32_t> step_tokens = prompt_ids;
  std::vector<int32_t> positions;
  int processed = 0;
  absl::Time start = absl::Now();
  absl::Duration prefill_time;
  while (static_cast<int>(gen_ids.size()) < max_new) {
    positions.resize(step_tokens.size());
    for (size_t i = 0; i < step_tokens.size(); ++i) positions[i] = processed + static_cast<int>(i);
    int seq_len = processed + static_cast<int>(step_tokens.size());
    int32_t query_start[2] = {0, static_cast<int32_t>(step_tokens.size())};
    int32_t seq_lens[1] = {seq_len};
    int32_t block_indptr[2] = {0, (seq_len + kBlockSize - 1) / kBlockSize};
    int32_t logits_index[1] = {static_cast<int32_t>(step_tokens.size()) - 1};
    ForwardBatch batch{step_tokens, positions, query_start, seq_lens, block_indptr, blocks, logits_index};
    if (auto s = forward.Forward(batch, **kv, logits.data()); !s.ok()) {
      std::fprintf(stderr, "\nerror: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    if (processed == 0) prefill_time = absl::Now() - start;
    processed = seq_len;
    int32_t next = sampler.Sample(logits, prompt_ids, gen_ids, model.eos_ids()).id;
    if (std::find(model.eos_ids().begin(), model.eos_ids().end(), next) != model.eos_ids().end()) {
      break;
    }
    gen_ids.push_back(next);
    std::string piece = detok.Add(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    step_tokens.assign(1, next);
  }
  std::string rest = detok.Flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  if (f.print_ids) {
    std::printf("prompt_ids: %s\n", absl::StrJoin(prompt_ids, " ").c_str());
    std::printf("gen_ids: %s\n", absl::StrJoin(gen_ids, " ").c_str());
  }
  absl::Duration decode_time = absl::Now() - start - prefill_time;
  double pp = prompt_ids.size() / std::max(1e-9, absl::ToDoubleSeconds(prefill_time));
  double tg = gen_ids.size() > 1 ? (gen_ids.size() - 1) / std::max(1e-9, absl::ToDoubleSeconds(decode_time)) : 0;
  std::fprintf(stderr, "[%zu prompt tokens at %.1f tok/s, %zu generated at %.1f tok/s, %d threads]\n",
               prompt_ids.size(), pp, gen_ids.size(), tg, pool.num_threads());
  return 0;
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  GenerateFlags f;
  FlagParser flags("generate",
                   "Generates text for one prompt on the local CPU engine and streams it to stdout.\n"
                   "Without --model it uses the built-in tiny model (generated on first use).");
  flags.AddString("model", &f.model, "GGUF file or Hugging Face model directory");
  flags.AddString("prompt", &f.prompt, "the prompt text");
  flags.AddInt("max-tokens", &f.max_tokens, "most tokens to generate");
  flags.AddDouble("temperature", &f.temperature, "sampling temperature; 0 is greedy");
  flags.AddDouble("top-p", &f.top_p, "nucleus sampling threshold (1 = off)");
  flags.AddInt("top-k", &f.top_k, "keep the k most likely tokens (0 = off)");
  flags.AddDouble("min-p", &f.min_p, "drop tokens below min-p times the top probability (0 = off)");
  flags.AddInt("seed", &f.seed, "random seed for sampling");
  flags.AddInt("threads", &f.threads, "CPU threads (0 = one per core)");
  flags.AddBool("print-ids", &f.print_ids, "also print 'prompt_ids: ...' and 'gen_ids: ...' lines");
  flags.AddBool("no-bos", &f.no_bos, "do not add the BOS token even if the vocabulary asks for it");
  flags.AddString("log-level", &f.log_level, "trace, debug, info, warn, error or off");
  return RunWithFlags(flags, argc, argv, [&] { return Generate(f); });
}

}  // namespace ferry
