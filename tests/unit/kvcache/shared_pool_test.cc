// Shared KV pools (kvcache/shared_pool.h) and the same-host chunk copies of
// kvcache/kv_transfer.h: mapping a sealed memfd through /proc, what a
// mapping refuses, the cache of mappings, a real second process reading
// the pool, and copying blocks out of a pool with their checksums checked.
#include "kvcache/shared_pool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kvcache/kv_cache.h"
#include "kvcache/kv_transfer.h"

namespace ferry {
namespace {

constexpr std::string_view kModel = "llama-test";

TEST(SharedPoolTest, HostKeyNamesBootAndPidNamespace) {
  const std::string& key = SharedPoolHostKey();
  ASSERT_FALSE(key.empty());
  EXPECT_NE(key.find("/pid:["), std::string::npos) << key;
  EXPECT_EQ(&key, &SharedPoolHostKey());
}

TEST(SharedPoolTest, MapsTheOwnersMemoryAndSeesItsWrites) {
  auto mem = SharedMemory::Create("ferry-test", 3 * 4096 + 100);
  ASSERT_TRUE(mem.ok()) << mem.status();
  auto* bytes = static_cast<unsigned char*>((*mem)->data());
  for (size_t i = 0; i < (*mem)->size(); ++i) ASSERT_EQ(bytes[i], 0) << i;
  std::memcpy(bytes + 5000, "hello", 5);
  const SharedPoolRef ref = (*mem)->Ref();
  EXPECT_EQ(ref.host, SharedPoolHostKey());
  EXPECT_EQ(ref.pid, getpid());
  EXPECT_EQ(ref.size, 3 * 4096 + 100);

  auto mapped = MappedPool::Open(ref);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  ASSERT_EQ((*mapped)->size(), (*mem)->size());
  EXPECT_EQ(std::memcmp((*mapped)->data() + 5000, "hello", 5), 0);
  // Another mapping of the same pages, not a copy.
  EXPECT_NE(static_cast<const void*>((*mapped)->data()), (*mem)->data());
  bytes[7] = 42;
  EXPECT_EQ(static_cast<unsigned char>((*mapped)->data()[7]), 42);
}

TEST(SharedPoolTest, RefusesWhatItCannotTrust) {
  auto mem = SharedMemory::Create("ferry-test", 4096);
  ASSERT_TRUE(mem.ok()) << mem.status();
  const SharedPoolRef good = (*mem)->Ref();

  SharedPoolRef other_host = good;
  other_host.host = "another-boot/pid:[1]";
  EXPECT_TRUE(absl::IsFailedPrecondition(MappedPool::Open(other_host).status()));
  SharedPoolRef no_host = good;
  no_host.host.clear();
  EXPECT_TRUE(absl::IsFailedPrecondition(MappedPool::Open(no_host).status()));
  SharedPoolRef wrong_inode = good;
  wrong_inode.inode += 1;
  EXPECT_TRUE(absl::IsFailedPrecondition(MappedPool::Open(wrong_inode).status()));
  SharedPoolRef wrong_size = good;
  wrong_size.size *= 2;
  EXPECT_TRUE(absl::IsFailedPrecondition(MappedPool::Open(wrong_size).status()));
  SharedPoolRef closed_fd = good;
  closed_fd.fd = 1 << 20;
  EXPECT_TRUE(absl::IsFailedPrecondition(MappedPool::Open(closed_fd).status()));
  SharedPoolRef no_pid = good, no_fd = good, empty = good;
  no_pid.pid = 0;
  no_fd.fd = -1;
  empty.size = 0;
  for (const SharedPoolRef& bad : {no_pid, no_fd, empty}) {
    EXPECT_TRUE(absl::IsInvalidArgument(MappedPool::Open(bad).status()));
  }

  // A file that is not sealed could shrink under a reader (SIGBUS): refused.
  const int fd = memfd_create("ferry-unsealed", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  SharedPoolRef unsealed = good;
  unsealed.fd = fd;
  unsealed.inode = st.st_ino;
  unsealed.device = st.st_dev;
  unsealed.size = 4096;
  absl::Status s = MappedPool::Open(unsealed).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("sealed"), std::string_view::npos) << s;
  close(fd);
}

TEST(SharedPoolTest, AnotherProcessReadsThePool) {
  auto mem = SharedMemory::Create("ferry-test", 1 << 16);
  ASSERT_TRUE(mem.ok()) << mem.status();
  auto* bytes = static_cast<unsigned char*>((*mem)->data());
  for (size_t i = 0; i < (*mem)->size(); ++i) bytes[i] = static_cast<unsigned char>(i * 7);
  const SharedPoolRef ref = (*mem)->Ref();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child is another process: it reaches the pool through /proc.
    auto mapped = MappedPool::Open(ref);
    if (!mapped.ok()) _exit(2);
    for (size_t i = 0; i < (*mapped)->size(); ++i) {
      if (static_cast<unsigned char>((*mapped)->data()[i]) != static_cast<unsigned char>(i * 7)) _exit(3);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: the child could not map the pool; 3: it read other bytes";
}

TEST(SharedPoolTest, CacheMapsEachPoolOnceAndDropsTheOldest) {
  auto a = SharedMemory::Create("ferry-a", 4096);
  auto b = SharedMemory::Create("ferry-b", 4096);
  auto c = SharedMemory::Create("ferry-c", 4096);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  MappedPoolCache cache(2);
  auto a1 = cache.Get((*a)->Ref());
  auto a2 = cache.Get((*a)->Ref());
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(a1->get(), a2->get());
  auto b1 = cache.Get((*b)->Ref());
  ASSERT_TRUE(b1.ok());
  ASSERT_TRUE(cache.Get((*a)->Ref()).ok());  // a is now the most recent
  ASSERT_TRUE(cache.Get((*c)->Ref()).ok());  // drops b
  auto a3 = cache.Get((*a)->Ref());
  auto b2 = cache.Get((*b)->Ref());
  ASSERT_TRUE(a3.ok() && b2.ok());
  EXPECT_EQ(a3->get(), a1->get());
  EXPECT_NE(b2->get(), b1->get());  // mapped anew
  SharedPoolRef gone = (*a)->Ref();
  gone.inode += 1;
  EXPECT_FALSE(cache.Get(gone).ok());

  // An owner gone (here: its file closed) is dropped; so is what stays
  // unused for long.
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.DropStale(absl::Hours(1)), 0);
  a->reset();
  EXPECT_EQ(cache.DropStale(absl::Hours(1)), 1);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(std::memcmp(a3->get()->data(), b2->get()->data(), 16), 0) << "a dropped mapping held stays valid";
  EXPECT_EQ(cache.DropStale(absl::ZeroDuration()), 1);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(SharedPoolTest, SharedKvCacheIsZeroedAndMappable) {
  KvCacheShape shape;
  shape.num_layers = 2;
  shape.num_kv_heads = 2;
  shape.head_dim = 4;
  shape.block_size = 4;
  shape.num_blocks = 5;
  auto kv = KvCache::Create(shape, /*shared=*/true);
  ASSERT_TRUE(kv.ok()) << kv.status();
  ASSERT_NE((*kv)->shared_memory(), nullptr);
  EXPECT_EQ((*kv)->shared_memory()->data(), (*kv)->Block(0));
  for (int64_t i = 0; i < shape.floats_per_block() * shape.num_blocks; ++i) ASSERT_EQ((*kv)->Block(0)[i], 0.0f);
  (*kv)->Block(3)[1] = 2.5f;
  auto mapped = MappedPool::Open((*kv)->shared_memory()->Ref());
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  float seen = 0;
  std::memcpy(&seen, (*mapped)->data() + 3 * shape.bytes_per_block() + sizeof(float), sizeof(float));
  EXPECT_EQ(seen, 2.5f);
  EXPECT_EQ(KvCache::Create(shape).value()->shared_memory(), nullptr);
}

// ---- Copying blocks out of a pool (kv_transfer.h) ----

class PoolCopyTest : public testing::Test {
 protected:
  void SetUp() override {
    shape_.num_layers = 2;
    shape_.num_kv_heads = 2;
    shape_.head_dim = 4;
    shape_.block_size = 4;
    shape_.num_blocks = 8;
    src_ = KvCache::Create(shape_, true).value();
    dst_ = KvCache::Create(shape_).value();
    for (int64_t b = 0; b < shape_.num_blocks; ++b) {
      for (int64_t i = 0; i < shape_.floats_per_block(); ++i) src_->Block(b)[i] = static_cast<float>(b * 1000 + i);
    }
    pool_ = std::span<const std::byte>(static_cast<const std::byte*>(src_->shared_memory()->data()),
                                       src_->shared_memory()->size());
    header_ = MakeKvTransferHeader(shape_, kModel, 4, 14);
    // Blocks 1..3 of a 4-block sequence, held in pool blocks 6, 0, 4.
    for (size_t i = 0; i < pool_blocks_.size(); ++i) sums_.push_back(Sum(pool_blocks_[i], 1 + i));
  }
  uint64_t Sum(int32_t pool_block, int64_t index) const {
    return KvBlockChecksum(std::as_bytes(std::span<const float>(src_->Block(pool_block), shape_.floats_per_block())),
                           index);
  }
  absl::Status Copy(std::span<const int32_t> dst_blocks) {
    auto write = [this](int32_t block, std::span<const float> in) {
      std::memcpy(dst_->Block(block), in.data(), in.size_bytes());
      return absl::OkStatus();
    };
    return CopyPoolBlocks(pool_, pool_blocks_, sums_, header_, kModel, shape_, write, dst_blocks, 1);
  }
  bool Same(int32_t dst_block, int32_t src_block) const {
    return std::memcmp(dst_->Block(dst_block), src_->Block(src_block), shape_.bytes_per_block()) == 0;
  }

  KvCacheShape shape_;
  std::unique_ptr<KvCache> src_, dst_;
  std::span<const std::byte> pool_;
  KvTransferHeader header_;
  std::vector<int32_t> pool_blocks_ = {6, 0, 4};
  std::vector<uint64_t> sums_;
  std::vector<int32_t> dst_blocks_ = {2, 7, 5};
};

TEST_F(PoolCopyTest, CopiesBlocksByIdAndMatchesTheEncodedChunk) {
  ASSERT_TRUE(Copy(dst_blocks_).ok());
  EXPECT_TRUE(Same(2, 6));
  EXPECT_TRUE(Same(7, 0));
  EXPECT_TRUE(Same(5, 4));
  // As bytes, the same chunk the sender would have encoded.
  auto encoded = EncodePoolBlocks(pool_, pool_blocks_, sums_, header_, kModel, shape_, 1);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  EXPECT_TRUE(*encoded == EncodeBlocks(*src_, pool_blocks_, 1));
}

TEST_F(PoolCopyTest, ABlockThatChangedIsCaught) {
  src_->Block(0)[3] += 1;  // after its checksum was taken
  absl::Status s = Copy(dst_blocks_);
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_TRUE(Same(2, 6));  // blocks before it were written
  EXPECT_FALSE(Same(7, 0));
  EXPECT_TRUE(absl::IsDataLoss(EncodePoolBlocks(pool_, pool_blocks_, sums_, header_, kModel, shape_, 1).status()));
  // A checksum taken for another position does not pass either.
  src_->Block(0)[3] -= 1;
  std::swap(sums_[0], sums_[1]);
  EXPECT_TRUE(absl::IsDataLoss(Copy(dst_blocks_)));
}

TEST_F(PoolCopyTest, RefusesChunksThatDoNotFit) {
  auto expect_invalid = [&](absl::Status s) { EXPECT_TRUE(absl::IsInvalidArgument(s)) << s; };
  std::vector<int32_t> two = {2, 7};
  expect_invalid(Copy(two));  // fewer destination blocks than pool blocks
  std::vector<int32_t> twice = {2, 2, 5};
  expect_invalid(Copy(twice));
  std::vector<int32_t> outside_dst = {2, 7, 8};
  expect_invalid(Copy(outside_dst));
  pool_blocks_[2] = 8;  // past the pool
  expect_invalid(Copy(dst_blocks_));
  pool_blocks_[2] = -1;
  expect_invalid(Copy(dst_blocks_));
  pool_blocks_[2] = 4;
  sums_.pop_back();
  expect_invalid(Copy(dst_blocks_));
  sums_.push_back(Sum(4, 3));
  header_.num_blocks = 3;  // the range passes the sequence's end
  header_.num_tokens = 12;
  expect_invalid(Copy(dst_blocks_));
  header_ = MakeKvTransferHeader(shape_, "another-model", 4, 14);
  expect_invalid(Copy(dst_blocks_));
  // A pool too small for the block ids it is said to hold.
  header_ = MakeKvTransferHeader(shape_, kModel, 4, 14);
  pool_ = pool_.first(static_cast<size_t>(5 * shape_.bytes_per_block()));
  expect_invalid(Copy(dst_blocks_));
  // Nothing was written: the destination blocks are still zero.
  for (int32_t b : dst_blocks_) EXPECT_EQ(dst_->Block(b)[1], 0.0f);
}

}  // namespace
}  // namespace ferry
