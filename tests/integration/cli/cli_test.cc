// The ferry binary end to end: subcommands, help, errors, and greedy
// generation on a real trained model against llama.cpp's recorded output.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_split.h"
#include "engine/formats/llama2c.h"
#include "gtest/gtest.h"
#include "tests/process_util.h"
#include "tests/test_support.h"

namespace ferry::testing {
namespace {

std::string LineAfter(const std::string& out, const std::string& prefix) {
  size_t pos = out.find("\n" + prefix);
  if (pos == std::string::npos) {
    if (out.rfind(prefix, 0) != 0) return "<missing>";
    pos = 0;
  } else {
    pos += 1;
  }
  size_t end = out.find('\n', pos);
  return out.substr(pos + prefix.size(), end == std::string::npos ? std::string::npos : end - pos - prefix.size());
}

TEST(CliTest, VersionNamesBackendsAndCpuFeatures) {
  CommandResult r = RunCommand(FerryBinary() + " version");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("ferry "), std::string::npos);
  EXPECT_NE(r.out.find("commit: "), std::string::npos);
  bool cuda_line = r.out.find("\ncuda: yes\n") != std::string::npos ||
                   r.out.find("\ncuda: no\n") != std::string::npos;
  EXPECT_TRUE(cuda_line) << r.out;
  EXPECT_NE(r.out.find("cpu features: "), std::string::npos);
}

TEST(CliTest, HelpForEverySubcommand) {
  for (const char* cmd : {"generate", "make-model", "version"}) {
    CommandResult r = RunCommand(FerryBinary() + " " + cmd + " --help");
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.out;
    EXPECT_NE(r.out.find("Usage: ferry"), std::string::npos) << cmd;
  }
  CommandResult top = RunCommand(FerryBinary() + " --help");
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_NE(top.out.find("generate"), std::string::npos);
}

TEST(CliTest, UnknownCommandAndFlagAreErrors) {
  EXPECT_EQ(RunCommand(FerryBinary() + " no-such-command", true).exit_code, 2);
  CommandResult r = RunCommand(FerryBinary() + " generate --no-such-flag 1", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("--no-such-flag"), std::string::npos) << r.out;
  r = RunCommand(FerryBinary() + " generate --max-tokens abc", true);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("--max-tokens"), std::string::npos) << r.out;
}

TEST(CliTest, MissingModelFileIsAClearError) {
  CommandResult r = RunCommand(FerryBinary() + " generate --model /nonexistent/model.gguf --prompt hi", true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("/nonexistent/model.gguf"), std::string::npos) << r.out;
}

TEST(CliTest, NotAModelFileIsAClearError) {
  std::string path = ferry::testing::UniqueTempPath("garbage.gguf");
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not a model", f);
  std::fclose(f);
  CommandResult r = RunCommand(FerryBinary() + " generate --model " + path + " --prompt hi", true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("garbage.gguf"), std::string::npos) << r.out;
}

// llama.cpp (build b4748), greedy, 64 tokens, recorded in ../shared/models/README.md.
constexpr char kStoriesGreedyIds[] =
    "432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 "
    "411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352 266 268 388 426 "
    "338 391 266 267 337 335 312 432 398 312 286 267 414 270 333 415 426 13 438 310 "
    "439 419 357 336";
TEST(CliTest, Stories260KGreedyMatchesLlamaCpp) {
  FERRY_REQUIRE_SHARED(model, "models/stories260K.gguf");
  for (int threads : {1, 2}) {
    CommandResult r = RunCommand(FerryBinary() + " generate --model " + model +
                                 " --prompt 'Once upon a time' --max-tokens 64 --temperature 0"
                                 " --print-ids --threads " + std::to_string(threads));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(LineAfter(r.out, "prompt_ids: "), "1 403 407 261 378");
    EXPECT_EQ(LineAfter(r.out, "gen_ids: "), kStoriesGreedyIds);
    EXPECT_NE(r.out.find(", there was a little girl named Lily. She loved to play outside in the park."),
              std::string::npos)
        << r.out;
  }
}

// The same model as Karpathy's llama2.c checkpoint, with tok512.model next to it.
TEST(CliTest, Stories260KLlama2cCheckpointMatchesLlamaCpp) {
  FERRY_REQUIRE_SHARED(model, "models/llama2c-stories260K/stories260K.bin");
  CommandResult r =
      RunCommand(FerryBinary() + " generate --model " + model +
                 " --prompt 'Once upon a time' --max-tokens 64 --temperature 0 --print-ids");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(LineAfter(r.out, "prompt_ids: "), "1 403 407 261 378");
  EXPECT_EQ(LineAfter(r.out, "gen_ids: "), kStoriesGreedyIds);
}

// Rewrites a legacy llama2.c checkpoint as version 1 ("ak42" header, the
// norms first), as llama2.c's export.py writes it.
std::string LegacyToVersion1(const std::string& legacy) {
  auto checkpoint = Llama2cCheckpoint::Open(legacy);
  if (!checkpoint.ok()) return "";
  const Llama2cConfig& c = (*checkpoint)->config();
  std::string out(256, '\0');
  const int32_t header[] = {static_cast<int32_t>(Llama2cCheckpoint::kMagic),
                            1,
                            c.dim,
                            c.hidden_dim,
                            c.num_layers,
                            c.num_heads,
                            c.num_kv_heads,
                            c.vocab_size,
                            c.seq_len};
  std::memcpy(out.data(), header, sizeof(header));
  out[sizeof(header)] = c.shared_classifier ? 1 : 0;
  const auto put = [&](const std::string& name) {
    const Llama2cTensor* t = (*checkpoint)->Find(name);
    if (t != nullptr) out.append(reinterpret_cast<const char*>(t->data), t->num_bytes);
  };
  const auto per_layer = [&](const std::string& part) {
    for (int l = 0; l < c.num_layers; ++l) put("layers." + std::to_string(l) + "." + part);
  };
  per_layer("attention_norm.weight");
  per_layer("ffn_norm.weight");
  put("norm.weight");
  put("tok_embeddings.weight");
  for (const char* part :
       {"attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
        "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight"}) {
    per_layer(part);
  }
  put("output.weight");
  return out;
}

// Version 1 of the checkpoint, with llama2.c's own tokenizer.bin beside it.
TEST(CliTest, Llama2cVersion1CheckpointWithTokenizerBinMatches) {
  FERRY_REQUIRE_SHARED(model, "models/llama2c-stories260K/stories260K.bin");
  FERRY_REQUIRE_SHARED(vocab, "models/llama2c-stories260K/tok512.bin");
  const std::string dir = UniqueTempPath("llama2c-v1");
  std::filesystem::create_directories(dir);
  const std::string v1 = LegacyToVersion1(model);
  ASSERT_FALSE(v1.empty());
  std::ofstream(dir + "/model.bin", std::ios::binary) << v1;
  std::filesystem::create_symlink(vocab, dir + "/tokenizer.bin");
  CommandResult r =
      RunCommand(FerryBinary() + " generate --model " + dir + "/model.bin" +
                 " --prompt 'Once upon a time' --max-tokens 64 --temperature 0 --print-ids");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(LineAfter(r.out, "prompt_ids: "), "1 403 407 261 378");
  EXPECT_EQ(LineAfter(r.out, "gen_ids: "), kStoriesGreedyIds);
  // Without a tokenizer next to it the error says where it looked.
  std::filesystem::remove(dir + "/tokenizer.bin");
  r = RunCommand(FerryBinary() + " generate --model " + dir + "/model.bin --prompt hi", true);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("no tokenizer next to this llama2.c checkpoint"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("tok512.model"), std::string::npos) << r.out;
  std::filesystem::remove_all(dir);
}

TEST(CliTest, BuiltinModelGeneratesWithoutAModelFlag) {
  std::string cache = std::string(::testing::TempDir()) + "/ferry-cache-" + std::to_string(::getpid());
  CommandResult r = RunCommand("FERRY_CACHE_DIR=" + cache + " " + FerryBinary() +
                               " generate --prompt 'Hello' --max-tokens 8 --temperature 0 --print-ids");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::vector<std::string> ids = absl::StrSplit(LineAfter(r.out, "gen_ids: "), ' ', absl::SkipEmpty());
  EXPECT_GE(ids.size(), 1u);
  // A second run reuses the cached model and gives the same greedy tokens.
  CommandResult again = RunCommand("FERRY_CACHE_DIR=" + cache + " " + FerryBinary() +
                                   " generate --prompt 'Hello' --max-tokens 8 --temperature 0 --print-ids");
  ASSERT_EQ(again.exit_code, 0);
  EXPECT_EQ(LineAfter(again.out, "gen_ids: "), LineAfter(r.out, "gen_ids: "));
  std::filesystem::remove_all(cache);
}

TEST(CliTest, SampledGenerationIsReproducibleWithASeed) {
  FERRY_REQUIRE_SHARED(model, "models/stories260K.gguf");
  std::string cmd = FerryBinary() + " generate --model " + model +
                    " --prompt 'Once upon a time' --max-tokens 32 --temperature 1.0 --top-p 0.9 --print-ids";
  CommandResult a = RunCommand(cmd + " --seed 7");
  CommandResult b = RunCommand(cmd + " --seed 7");
  CommandResult c = RunCommand(cmd + " --seed 8");
  ASSERT_EQ(a.exit_code, 0);
  EXPECT_EQ(LineAfter(a.out, "gen_ids: "), LineAfter(b.out, "gen_ids: "));
  EXPECT_NE(LineAfter(a.out, "gen_ids: "), LineAfter(c.out, "gen_ids: "));
}

}  // namespace
}  // namespace ferry::testing
