// Long random runs of what the engine does with blocks (admit with prefix
// reuse, decode, fork for n>1 samples, copy-on-write, finish, preempt, raw
// allocations), checking after every step that the pool is consistent, that
// reference counts equal the handles alive, and that every sequence reads
// back exactly its own tokens through its block table.
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kvcache/block_pool.h"

namespace ferry {
namespace {

struct Sequence {
  BlockTable table;
  std::vector<int32_t> tokens;
};

class Simulation {
 public:
  Simulation(uint32_t seed, int64_t num_blocks, int block_size)
      : rng_(seed), block_size_(block_size) {
    BlockPoolOptions options;
    options.num_blocks = num_blocks;
    options.block_size = block_size;
    options.model_key = "sim";
    pool_ = BlockPool::Create(options).value();
    // "Memory": the token id stored in each slot, standing in for its KV.
    slots_.assign(static_cast<size_t>(num_blocks * block_size), -1);
    // A few shared prompt stems so prefixes repeat.
    for (int s = 0; s < 3; ++s) {
      std::vector<int32_t> stem(static_cast<size_t>(block_size * (1 + s)));
      for (auto& t : stem) t = Uniform(0, 50);
      stems_.push_back(stem);
    }
  }

  void Step() {
    switch (Uniform(0, 9)) {
      case 0:
      case 1:
        Admit();
        break;
      case 2:
      case 3:
      case 4:
        if (!seqs_.empty()) Decode(Pick());
        break;
      case 5:
        if (!seqs_.empty()) Fork(Pick());
        break;
      case 6:
        if (!seqs_.empty()) Drop(Pick());  // finish or preemption
        break;
      case 7:
        RawAllocate();
        break;
      case 8:
        if (!raw_.empty()) raw_.pop_back();
        break;
      case 9:
        if (Uniform(0, 20) == 0) PreemptAll();
        break;
    }
  }

  void Check() {
    ASSERT_TRUE(pool_->CheckInvariants().ok()) << pool_->CheckInvariants();
    std::map<int32_t, int> refs;
    for (const auto& seq : seqs_) {
      for (const BlockRef& b : seq->table.blocks()) ++refs[b.id()];
    }
    for (const auto& group : raw_) {
      for (const BlockRef& b : group) ++refs[b.id()];
    }
    int64_t used = 0;
    for (int32_t b = 0; b < pool_->num_blocks(); ++b) {
      ASSERT_EQ(pool_->ref_count(b), refs.count(b) ? refs[b] : 0) << "block " << b;
      used += pool_->ref_count(b) > 0;
    }
    ASSERT_EQ(pool_->num_used(), used);
    for (const auto& seq : seqs_) {
      ASSERT_LE(seq->table.num_tokens(), seq->table.capacity_tokens());
      for (int64_t p = 0; p < seq->table.num_tokens(); ++p) {
        ASSERT_EQ(slots_[seq->table.Slot(p)], seq->tokens[p]) << "position " << p;
      }
    }
  }

  void Finish() {
    seqs_.clear();
    raw_.clear();
  }

  BlockPool& pool() { return *pool_; }
  int64_t hits() const { return pool_->stats().prefix_hit_blocks; }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  size_t Pick() { return static_cast<size_t>(Uniform(0, static_cast<int>(seqs_.size()) - 1)); }

  void Write(Sequence& seq, int64_t from) {
    for (int64_t p = from; p < seq.table.num_tokens(); ++p)
      slots_[seq.table.Slot(p)] = seq.tokens[p];
  }

  void Admit() {
    auto seq =
        std::make_unique<Sequence>(Sequence{pool_->NewTable(Uniform(0, 4) == 0 ? 7 : 0), {}});
    seq->tokens = stems_[static_cast<size_t>(Uniform(0, 2))];
    const int extra = Uniform(1, 3 * block_size_);
    for (int i = 0; i < extra; ++i) seq->tokens.push_back(Uniform(0, 3));
    std::span<const int32_t> all(seq->tokens);
    const int64_t cached = pool_->MatchPrefix(all.first(all.size() - 1), seq->table).value();
    ASSERT_EQ(cached % block_size_, 0);
    const int64_t total = static_cast<int64_t>(seq->tokens.size());
    auto blocks = pool_->Allocate(seq->table.NumBlocksToAdd(total));
    if (!blocks) return;  // would be queued or preempt others; dropping it releases the match
    seq->table.Append(std::move(*blocks));
    seq->table.set_num_tokens(total);
    Write(*seq, cached);
    ASSERT_TRUE(pool_->CommitFullBlocks(seq->table, seq->tokens).ok());
    seqs_.push_back(std::move(seq));
  }

  void Decode(size_t i) {
    Sequence& seq = *seqs_[i];
    auto copies = pool_->MakeWritable(seq.table);
    if (!copies) {
      Drop(i);
      return;
    }
    for (const BlockCopy& c : *copies) {
      for (int s = 0; s < block_size_; ++s) {
        slots_[c.dst * block_size_ + s] = slots_[c.src * block_size_ + s];
      }
    }
    const int64_t n = seq.table.num_tokens() + 1;
    auto blocks = pool_->Allocate(seq.table.NumBlocksToAdd(n));
    if (!blocks) {
      Drop(i);
      return;
    }
    seq.table.Append(std::move(*blocks));
    seq.tokens.push_back(Uniform(0, 3));
    seq.table.set_num_tokens(n);
    Write(seq, n - 1);
    ASSERT_TRUE(pool_->CommitFullBlocks(seq.table, seq.tokens).ok());
  }

  void Fork(size_t i) {
    auto child = std::make_unique<Sequence>(Sequence{seqs_[i]->table.Fork(), seqs_[i]->tokens});
    seqs_.push_back(std::move(child));
  }

  void Drop(size_t i) { seqs_.erase(seqs_.begin() + static_cast<ptrdiff_t>(i)); }

  void RawAllocate() {
    const int n = Uniform(0, 4);
    const bool could = pool_->CanAllocate(n);
    const int64_t free_before = pool_->num_free();
    auto blocks = pool_->Allocate(n);
    ASSERT_EQ(blocks.has_value(), could);
    if (!blocks) {
      ASSERT_EQ(pool_->num_free(), free_before);
      return;
    }
    raw_.push_back(std::move(*blocks));
  }

  void PreemptAll() { seqs_.clear(); }

  std::mt19937 rng_;
  int block_size_;
  std::unique_ptr<BlockPool> pool_;
  std::vector<int32_t> slots_;
  std::vector<std::vector<int32_t>> stems_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
  std::vector<std::vector<BlockRef>> raw_;
};

TEST(BlockPoolRandomTest, InvariantsHoldAndNothingLeaks) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    const int block_size = 1 + static_cast<int>(seed % 4);
    Simulation sim(seed, 24 + seed, block_size);
    for (int step = 0; step < 2000; ++step) {
      sim.Step();
      sim.Check();
      if (testing::Test::HasFatalFailure()) return;
    }
    EXPECT_GT(sim.hits(), 0);
    sim.Finish();
    EXPECT_TRUE(sim.pool().CheckInvariants().ok());
    EXPECT_EQ(sim.pool().num_free(), sim.pool().num_blocks());
    EXPECT_EQ(sim.pool().num_used(), 0);
    for (int32_t b = 0; b < sim.pool().num_blocks(); ++b) EXPECT_EQ(sim.pool().ref_count(b), 0);
    // Events replayed in order give exactly the hashes still cached.
    std::map<uint64_t, int> live;
    BlockHashEvents events = sim.pool().DrainEvents();
    ASSERT_FALSE(events.overflowed);
    for (const BlockHashEvent& e : events.events) {
      if (e.kind == BlockHashEvent::Kind::kStored) {
        ASSERT_EQ(live[e.hash]++, 0);
      } else {
        ASSERT_EQ(live[e.hash]--, 1);
      }
    }
    std::vector<uint64_t> replayed;
    for (const auto& [hash, n] : live) {
      if (n == 1) replayed.push_back(hash);
    }
    EXPECT_EQ(replayed, sim.pool().CachedHashes());
  }
}

}  // namespace
}  // namespace ferry
