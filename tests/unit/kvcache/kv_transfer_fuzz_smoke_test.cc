// Runs the libFuzzer entry point (tests/fuzz/kv_transfer_fuzz.cc) on mutated
// valid streams, so the decoder's robustness is checked in every build, not
// only in clang fuzzing builds.
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kvcache/kv_transfer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace ferry {
namespace {

int RunFuzzInput(const std::string& input) {
  return LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

TEST(KvTransferFuzzSmokeTest, MutatedStreamsNeverCrash) {
  KvCacheShape shape;
  shape.num_layers = 1;
  shape.num_kv_heads = 1;
  shape.head_dim = 2;
  shape.block_size = 2;
  shape.num_blocks = 4;
  auto cache = KvCache::Create(shape).value();
  std::vector<int32_t> blocks = {0, 1, 2};
  const std::string header = EncodeHeader(MakeKvTransferHeader(shape, "fuzz-model", 3, 6));
  const std::string chunk = EncodeBlocks(*cache, blocks, 0);

  std::vector<std::string> seeds;
  seeds.push_back(std::string(1, '\1') + chunk);
  std::string with_header(1, '\0');
  with_header.push_back(static_cast<char>(header.size() & 0xff));
  with_header.push_back(static_cast<char>(header.size() >> 8));
  seeds.push_back(with_header + header + chunk);
  // A same-host chunk: two pool blocks with their checksums.
  std::string pooled(1, '\3');
  auto put = [&pooled](const auto& v) { pooled.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(uint8_t{2});
  put(int64_t{0});
  put(int32_t{1});
  put(int32_t{2});
  const auto bytes = static_cast<size_t>(shape.bytes_per_block());
  put(KvBlockChecksum(std::as_bytes(std::span<const float>(cache->Block(1), bytes / sizeof(float))), 0));
  put(KvBlockChecksum(std::as_bytes(std::span<const float>(cache->Block(2), bytes / sizeof(float))), 1));
  seeds.push_back(pooled);

  std::mt19937 rng(1234);
  for (const std::string& seed : seeds) {
    EXPECT_EQ(RunFuzzInput(seed), 0);
    for (int iter = 0; iter < 3000; ++iter) {
      std::string input = seed;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        switch (rng() % 3) {
          case 0:
            if (input.size() > 1) input[1 + rng() % (input.size() - 1)] = static_cast<char>(rng());
            break;
          case 1:
            input.resize(1 + rng() % input.size());
            break;
          case 2:
            input.insert(1 + rng() % input.size(), 1, static_cast<char>(rng()));
            break;
        }
      }
      ASSERT_EQ(RunFuzzInput(input), 0);
    }
  }
  // Found by the fuzzer: a same-host chunk starting at block 2^63 - 1 (its
  // error message once computed first + count, a signed overflow).
  const unsigned char overflow[] = {0x23, 0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x23, 0x03};
  EXPECT_EQ(RunFuzzInput(std::string(reinterpret_cast<const char*>(overflow), sizeof(overflow)) +
                         std::string(44, 'z') + "V"),
            0);
  // Random garbage too.
  for (int iter = 0; iter < 2000; ++iter) {
    std::string input(rng() % 200, '\0');
    for (char& c : input) c = static_cast<char>(rng());
    ASSERT_EQ(RunFuzzInput(input), 0);
  }
}

}  // namespace
}  // namespace ferry
