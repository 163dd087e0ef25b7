#include "kvcache/kv_transfer.h"

#include <algorithm>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

constexpr std::string_view kModel = "llama-test";

KvCacheShape SmallShape() {
  KvCacheShape shape;
  shape.num_layers = 2;
  shape.num_kv_heads = 2;
  shape.head_dim = 4;
  shape.block_size = 4;
  shape.num_blocks = 8;
  return shape;
}

std::unique_ptr<KvCache> FilledCache(const KvCacheShape& shape, float base) {
  auto cache = KvCache::Create(shape).value();
  for (int64_t b = 0; b < shape.num_blocks; ++b) {
    for (int64_t i = 0; i < shape.floats_per_block(); ++i) {
      cache->Block(b)[i] = base + static_cast<float>(b * 1000 + i);
    }
  }
  return cache;
}

std::string Snapshot(const KvCache& cache) {
  return std::string(reinterpret_cast<const char*>(cache.Block(0)),
                     static_cast<size_t>(cache.shape().bytes_per_block() * cache.num_blocks()));
}

bool SameBlock(const KvCache& a, int32_t block_a, const KvCache& b, int32_t block_b) {
  return std::memcmp(a.Block(block_a), b.Block(block_b), a.shape().bytes_per_block()) == 0;
}

class KvTransferTest : public testing::Test {
 protected:
  void SetUp() override {
    src_ = FilledCache(SmallShape(), 0.5f);
    dst_ = FilledCache(SmallShape(), -7.0f);
    // Blocks 5, 2, 7 of the source hold a 10-token sequence.
    header_ = MakeKvTransferHeader(src_->shape(), kModel, 3, 10);
    chunk_ = EncodeBlocks(*src_, src_blocks_, 0);
  }

  // Expects `status` to be an error and the destination untouched.
  void ExpectRejected(const absl::Status& status, const std::string& before) {
    EXPECT_FALSE(status.ok());
    EXPECT_TRUE(Snapshot(*dst_) == before) << "destination was written despite " << status;
  }

  std::unique_ptr<KvCache> src_;
  std::unique_ptr<KvCache> dst_;
  std::vector<int32_t> src_blocks_ = {5, 2, 7};
  std::vector<int32_t> dst_blocks_ = {0, 3, 6};
  KvTransferHeader header_;
  std::string chunk_;
};

TEST_F(KvTransferTest, HeaderRoundTrip) {
  auto decoded = DecodeHeader(EncodeHeader(header_));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->model_id, kModel);
  EXPECT_EQ(decoded->num_layers, 2);
  EXPECT_EQ(decoded->num_kv_heads, 2);
  EXPECT_EQ(decoded->head_dim, 4);
  EXPECT_EQ(decoded->block_size, 4);
  EXPECT_EQ(decoded->dtype, "f32");
  EXPECT_EQ(decoded->num_blocks, 3);
  EXPECT_EQ(decoded->num_tokens, 10);
  EXPECT_TRUE(CheckKvTransferLayout(*decoded, dst_->shape(), kModel).ok());
}

TEST_F(KvTransferTest, EveryCorruptOrShortHeaderIsRejected) {
  const std::string bytes = EncodeHeader(header_);
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x20;
    EXPECT_FALSE(DecodeHeader(bad).ok()) << "flipped byte " << i;
  }
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeHeader(std::string_view(bytes).substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(DecodeHeader(bytes + "x").ok());
  KvTransferHeader inconsistent = header_;
  inconsistent.num_tokens = 13;  // needs 4 blocks, header says 3
  EXPECT_EQ(DecodeHeader(EncodeHeader(inconsistent)).status().code(),
            absl::StatusCode::kInvalidArgument);
  KvTransferHeader negative = header_;
  negative.head_dim = -4;
  EXPECT_FALSE(DecodeHeader(EncodeHeader(negative)).ok());
}

TEST_F(KvTransferTest, RoundTripInOneChunk) {
  auto header = DecodeHeader(EncodeHeader(header_));
  ASSERT_TRUE(header.ok());
  ASSERT_TRUE(DecodeAndWriteBlocks(chunk_, *header, kModel, *dst_, dst_blocks_, 0).ok());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(SameBlock(*src_, src_blocks_[i], *dst_, dst_blocks_[i])) << i;
  }
  // Blocks not written keep their contents.
  auto fresh = FilledCache(SmallShape(), -7.0f);
  for (int32_t b : {1, 2, 4, 5, 7}) EXPECT_TRUE(SameBlock(*fresh, b, *dst_, b)) << b;
}

TEST_F(KvTransferTest, RoundTripInChunks) {
  const std::string first = EncodeBlocks(*src_, std::span(src_blocks_).first(2), 0);
  const std::string second = EncodeBlocks(*src_, std::span(src_blocks_).subspan(2), 2);
  EXPECT_EQ(static_cast<int64_t>(first.size()),
            EncodedBlocksSize(src_->shape().bytes_per_block(), 2));
  ASSERT_TRUE(
      DecodeAndWriteBlocks(first, header_, kModel, *dst_, std::span(dst_blocks_).first(2), 0).ok());
  ASSERT_TRUE(
      DecodeAndWriteBlocks(second, header_, kModel, *dst_, std::span(dst_blocks_).subspan(2), 2)
          .ok());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(SameBlock(*src_, src_blocks_[i], *dst_, dst_blocks_[i])) << i;
  }
  // A chunk presented at the wrong position is refused.
  const std::string before = Snapshot(*dst_);
  ExpectRejected(
      DecodeAndWriteBlocks(second, header_, kModel, *dst_, std::span(dst_blocks_).first(1), 0),
      before);
}

// Splitting one chunk gives exactly the chunks EncodeBlocks writes for each
// range, so a sender can keep its messages small.
TEST_F(KvTransferTest, SplitChunksAreWhatEncodingEachRangeGives) {
  const std::string whole = EncodeBlocks(*src_, src_blocks_, 4);  // blocks 4..6 of a sequence
  auto pieces = SplitBlocks(whole, 2);
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  ASSERT_EQ(pieces->size(), 2u);
  EXPECT_EQ((*pieces)[0], EncodeBlocks(*src_, std::span(src_blocks_).first(2), 4));
  EXPECT_EQ((*pieces)[1], EncodeBlocks(*src_, std::span(src_blocks_).subspan(2), 6));
  auto one_each = SplitBlocks(whole, 1);
  ASSERT_TRUE(one_each.ok());
  EXPECT_EQ(one_each->size(), 3u);
  auto as_is = SplitBlocks(whole, 8);
  ASSERT_TRUE(as_is.ok());
  ASSERT_EQ(as_is->size(), 1u);
  EXPECT_EQ(as_is->front(), whole);
  // Pieces of a split chunk decode like the chunk.
  auto split = SplitBlocks(chunk_, 2);
  ASSERT_TRUE(split.ok());
  ASSERT_TRUE(DecodeAndWriteBlocks((*split)[0], header_, kModel, *dst_, std::span(dst_blocks_).first(2), 0).ok());
  ASSERT_TRUE(DecodeAndWriteBlocks((*split)[1], header_, kModel, *dst_, std::span(dst_blocks_).subspan(2), 2).ok());
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(SameBlock(*src_, src_blocks_[i], *dst_, dst_blocks_[i])) << i;
  // Bad input is refused.
  EXPECT_FALSE(SplitBlocks(chunk_, 0).ok());
  EXPECT_FALSE(SplitBlocks(chunk_.substr(0, chunk_.size() - 1), 2).ok());
  EXPECT_FALSE(SplitBlocks(chunk_ + "x", 2).ok());
  EXPECT_FALSE(SplitBlocks("FKVB", 2).ok());
  EXPECT_FALSE(SplitBlocks(EncodeHeader(header_), 2).ok());
}

TEST_F(KvTransferTest, CorruptBlockBytesAreRejectedWithNothingWritten) {
  const std::string before = Snapshot(*dst_);
  // Corrupt only the last block's data: the first two are valid, yet must not
  // be written either.
  std::string bad = chunk_;
  bad[bad.size() - 5] ^= 1;
  absl::Status s = DecodeAndWriteBlocks(bad, header_, kModel, *dst_, dst_blocks_, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  ExpectRejected(s, before);

  // Corrupt a stored checksum instead.
  bad = chunk_;
  bad[32] ^= 1;
  s = DecodeAndWriteBlocks(bad, header_, kModel, *dst_, dst_blocks_, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  ExpectRejected(s, before);

  // Every single-byte flip anywhere in the chunk is caught.
  for (size_t i = 0; i < chunk_.size(); i += 7) {
    bad = chunk_;
    bad[i] ^= 0x40;
    ExpectRejected(DecodeAndWriteBlocks(bad, header_, kModel, *dst_, dst_blocks_, 0), before);
  }
}

TEST_F(KvTransferTest, TruncatedOrPaddedPayloadIsRejected) {
  const std::string before = Snapshot(*dst_);
  for (size_t n = 0; n < chunk_.size(); n += 3) {
    ExpectRejected(DecodeAndWriteBlocks(std::string_view(chunk_).substr(0, n), header_, kModel,
                                        *dst_, dst_blocks_, 0),
                   before);
  }
  ExpectRejected(DecodeAndWriteBlocks(chunk_ + '\0', header_, kModel, *dst_, dst_blocks_, 0),
                 before);
}

TEST_F(KvTransferTest, BadDestinationBlocksAreRejected) {
  const std::string before = Snapshot(*dst_);
  for (std::vector<int32_t> dst :
       std::vector<std::vector<int32_t>>{{0, 3}, {0, 3, 6, 7}, {0, 3, 3}, {0, 3, 8}, {-1, 3, 6}}) {
    ExpectRejected(DecodeAndWriteBlocks(chunk_, header_, kModel, *dst_, dst, 0), before);
  }
  // A chunk reaching past the sequence's block count.
  KvTransferHeader shorter = MakeKvTransferHeader(SmallShape(), kModel, 2, 8);
  ExpectRejected(DecodeAndWriteBlocks(chunk_, shorter, kModel, *dst_, dst_blocks_, 0), before);
}

TEST_F(KvTransferTest, MismatchedLayoutIsRejectedWithNothingWritten) {
  struct Case {
    const char* name;
    void (*change)(KvCacheShape&);
  };
  const Case cases[] = {
      {"layers", [](KvCacheShape& s) { s.num_layers = 3; }},
      {"heads", [](KvCacheShape& s) { s.num_kv_heads = 1; }},
      {"head_dim", [](KvCacheShape& s) { s.head_dim = 8; }},
      {"block_size", [](KvCacheShape& s) { s.block_size = 2; }},
  };
  for (const Case& c : cases) {
    KvCacheShape shape = SmallShape();
    c.change(shape);
    auto other = FilledCache(shape, 3.0f);
    const std::string before = Snapshot(*other);
    absl::Status s = DecodeAndWriteBlocks(chunk_, header_, kModel, *other, dst_blocks_, 0);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_NE(s.message().find(c.name), absl::string_view::npos) << s;
    EXPECT_TRUE(Snapshot(*other) == before) << c.name;
  }
  // Same shape, other model.
  const std::string before = Snapshot(*dst_);
  absl::Status s = DecodeAndWriteBlocks(chunk_, header_, "other-model", *dst_, dst_blocks_, 0);
  EXPECT_NE(s.message().find("model id"), absl::string_view::npos) << s;
  ExpectRejected(s, before);
  // A header that does not describe the chunk's block size.
  KvTransferHeader wrong = header_;
  wrong.dtype = "f16";
  ExpectRejected(DecodeAndWriteBlocks(chunk_, wrong, kModel, *dst_, dst_blocks_, 0), before);
}

TEST_F(KvTransferTest, ChunkFromAnotherLayoutIsRejected) {
  // Header and destination agree, but the chunk came from a cache with
  // another head_dim: caught by its bytes-per-block field.
  KvCacheShape shape = SmallShape();
  shape.head_dim = 8;
  auto other = FilledCache(shape, 1.0f);
  const std::string foreign = EncodeBlocks(*other, src_blocks_, 0);
  const std::string before = Snapshot(*dst_);
  ExpectRejected(DecodeAndWriteBlocks(foreign, header_, kModel, *dst_, dst_blocks_, 0), before);
}

// Blocks kept outside a KvCache, one vector per block id, as a backend with
// its own storage would: encoding and decoding through callbacks must give
// and take exactly the bytes the KvCache overloads do.
class BlockStore {
 public:
  BlockStore(const KvCacheShape& shape, float base)
      : blocks_(static_cast<size_t>(shape.num_blocks)) {
    for (int64_t b = 0; b < shape.num_blocks; ++b) {
      for (int64_t i = 0; i < shape.floats_per_block(); ++i) {
        blocks_[static_cast<size_t>(b)].push_back(base + static_cast<float>(b * 1000 + i));
      }
    }
  }
  absl::Status Read(int32_t block, std::span<float> out) {
    ++reads;
    const std::vector<float>& src = blocks_.at(static_cast<size_t>(block));
    if (out.size() != src.size()) return absl::InternalError("read of the wrong size");
    std::copy(src.begin(), src.end(), out.begin());
    return absl::OkStatus();
  }
  absl::Status Write(int32_t block, std::span<const float> in) {
    ++writes;
    std::vector<float>& dst = blocks_.at(static_cast<size_t>(block));
    if (in.size() != dst.size()) return absl::InternalError("write of the wrong size");
    std::copy(in.begin(), in.end(), dst.begin());
    return absl::OkStatus();
  }
  const std::vector<float>& block(int32_t b) const { return blocks_.at(static_cast<size_t>(b)); }

  int reads = 0;
  int writes = 0;

 private:
  std::vector<std::vector<float>> blocks_;
};

TEST_F(KvTransferTest, CallbackEncodingMatchesCacheEncoding) {
  BlockStore store(SmallShape(), 0.5f);  // the same content as src_
  auto read = [&](int32_t b, std::span<float> out) { return store.Read(b, out); };
  auto chunk = EncodeBlocks(SmallShape(), read, src_blocks_, 0);
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_TRUE(*chunk == chunk_);
  EXPECT_EQ(store.reads, 3);
  auto later = EncodeBlocks(SmallShape(), read, std::span(src_blocks_).subspan(1), 4);
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_TRUE(*later == EncodeBlocks(*src_, std::span(src_blocks_).subspan(1), 4));
}

TEST_F(KvTransferTest, CallbackEncodingStopsAtAReadError) {
  int reads = 0;
  auto read = [&](int32_t b, std::span<float>) {
    ++reads;
    return b == 2 ? absl::InternalError("device copy failed") : absl::OkStatus();
  };
  auto chunk = EncodeBlocks(SmallShape(), read, src_blocks_, 0);  // 5, then 2 fails
  EXPECT_EQ(chunk.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(reads, 2);
}

TEST_F(KvTransferTest, CallbackDecodingWritesWhatTheCacheDecodingWrites) {
  BlockStore store(SmallShape(), -7.0f);  // the same content as dst_
  auto write = [&](int32_t b, std::span<const float> in) { return store.Write(b, in); };
  // An odd offset: the payload need not be aligned for floats.
  const std::string shifted = "x" + chunk_;
  ASSERT_TRUE(DecodeAndWriteBlocks(std::string_view(shifted).substr(1), header_, kModel,
                                   SmallShape(), write, dst_blocks_, 0)
                  .ok());
  ASSERT_TRUE(DecodeAndWriteBlocks(chunk_, header_, kModel, *dst_, dst_blocks_, 0).ok());
  EXPECT_EQ(store.writes, 3);
  for (int32_t b = 0; b < SmallShape().num_blocks; ++b) {
    EXPECT_EQ(std::memcmp(store.block(b).data(), dst_->Block(b), SmallShape().bytes_per_block()), 0)
        << b;
  }
}

TEST_F(KvTransferTest, CallbackDecodingWritesNothingFromABadChunk) {
  BlockStore store(SmallShape(), -7.0f);
  auto write = [&](int32_t b, std::span<const float> in) { return store.Write(b, in); };
  std::string bad = chunk_;
  bad[bad.size() - 1] ^= 1;  // the last block's payload: only its checksum catches it
  EXPECT_EQ(DecodeAndWriteBlocks(bad, header_, kModel, SmallShape(), write, dst_blocks_, 0).code(),
            absl::StatusCode::kDataLoss);
  std::vector<int32_t> outside = {0, 3, 8};  // 8 is past the shape's blocks
  EXPECT_EQ(DecodeAndWriteBlocks(chunk_, header_, kModel, SmallShape(), write, outside, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.writes, 0);
}

TEST_F(KvTransferTest, CallbackDecodingReturnsAWriteError) {
  int writes = 0;
  auto write = [&](int32_t, std::span<const float>) {
    return ++writes == 2 ? absl::InternalError("device copy failed") : absl::OkStatus();
  };
  EXPECT_EQ(
      DecodeAndWriteBlocks(chunk_, header_, kModel, SmallShape(), write, dst_blocks_, 0).code(),
      absl::StatusCode::kInternal);
  EXPECT_EQ(writes, 2);
}

}  // namespace
}  // namespace ferry
