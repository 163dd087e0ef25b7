// Byte-level context-free grammars for structured output (JSON schemas,
// regular expressions, fixed choices), and the matcher that constrains
// generation to them: it follows the bytes generated so far and tells which
// tokens of the vocabulary may come next.
//
// A grammar is a set of rules; a rule is a list of alternatives; an
// alternative is a sequence of elements, each a set of bytes or a reference
// to a rule. Left recursion is not allowed (the compilers here never produce
// it; repetition is right-recursive). The matcher keeps every parse that is
// still possible as a stack of positions (as llama.cpp's GBNF sampler does),
// with stacks shared and interned so that a loop such as the characters of
// a string comes back to the same state.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace ferry::structured {

struct ByteSet {
  std::array<uint64_t, 4> bits{};

  static ByteSet Of(uint8_t b) {
    ByteSet s;
    s.Add(b);
    return s;
  }
  static ByteSet Range(uint8_t lo, uint8_t hi) {
    ByteSet s;
    s.AddRange(lo, hi);
    return s;
  }
  void Add(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  void AddRange(uint8_t lo, uint8_t hi) {
    for (int b = lo; b <= hi; ++b) Add(static_cast<uint8_t>(b));
  }
  void Merge(const ByteSet& o) {
    for (int i = 0; i < 4; ++i) bits[static_cast<size_t>(i)] |= o.bits[static_cast<size_t>(i)];
  }
  bool Has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  bool Empty() const { return (bits[0] | bits[1] | bits[2] | bits[3]) == 0; }
  bool operator==(const ByteSet&) const = default;
};

// One element of an alternative: a byte set or a rule reference.
struct Element {
  enum class Kind : uint8_t { kBytes, kRule };
  Kind kind = Kind::kBytes;
  int32_t arg = 0;  // index into the byte sets, or the rule
};
using Sequence = std::vector<Element>;

class Grammar;

// Builds a grammar rule by rule; the helpers return new rules.
class GrammarBuilder {
 public:
  int NewRule();
  void AddAlternative(int rule, Sequence seq);
  int NumRules() const { return static_cast<int>(rules_.size()); }

  Element Bytes(const ByteSet& set);
  Element Byte(uint8_t b) { return Bytes(ByteSet::Of(b)); }
  static Element Ref(int rule) { return {Element::Kind::kRule, rule}; }
  // The bytes of `text`, one element each.
  Sequence Literal(std::string_view text);

  // A rule matching any one of `alternatives`.
  int Choice(std::vector<Sequence> alternatives);
  // A rule matching `body` repeated min..max times (max < 0: unbounded).
  int Repeat(const Sequence& body, int min, int max);

  // The grammar that matches rule `root`. InvalidArgument when it is too
  // large, has a rule with no alternative, or refers to a missing rule.
  absl::StatusOr<std::shared_ptr<const Grammar>> Build(int root) const;

 private:
  // InvalidArgument when a rule can begin with itself other than as the
  // last element of an alternative (which the matcher runs without growing
  // its stacks).
  absl::Status CheckLeftRecursion() const;

  std::vector<std::vector<Sequence>> rules_;
  std::vector<ByteSet> sets_;
  absl::flat_hash_map<std::string, int32_t> set_index_;
};

// Immutable and shared by every matcher of a request.
class Grammar {
 public:
  // Elements flattened: each alternative's elements, then an end marker.
  struct Slot {
    enum class Kind : uint8_t { kBytes, kRule, kEnd };
    Kind kind;
    int32_t arg;
  };

  int root() const { return root_; }
  const Slot& slot(uint32_t pos) const { return slots_[pos]; }
  std::span<const uint32_t> alternatives(int rule) const {
    return {alt_starts_.data() + rule_begin_[static_cast<size_t>(rule)],
            alt_starts_.data() + rule_begin_[static_cast<size_t>(rule) + 1]};
  }
  const ByteSet& bytes(int32_t index) const { return sets_[static_cast<size_t>(index)]; }
  size_t num_slots() const { return slots_.size(); }

 private:
  friend class GrammarBuilder;
  int root_ = 0;
  std::vector<Slot> slots_;
  std::vector<uint32_t> alt_starts_;  // slot index of each alternative
  std::vector<uint32_t> rule_begin_;  // rule r's alternatives: [begin[r], begin[r+1])
  std::vector<ByteSet> sets_;
};

// The vocabulary as a byte trie, built once per tokenizer: tokens that share
// a prefix are checked against the grammar together.
class TokenTrie {
 public:
  // `token_bytes[i]` is token i's bytes; empty ones (control tokens) are
  // never allowed by a grammar.
  explicit TokenTrie(const std::vector<std::string>& token_bytes);

  int32_t vocab_size() const { return vocab_size_; }

  struct Node {
    uint32_t first_child = 0;  // children are nodes [first_child, first_child + num_children)
    uint32_t num_children = 0;
    uint32_t first_token = 0;  // tokens ending here: tokens_[first_token, first_token + num_tokens)
    uint32_t num_tokens = 0;
    uint8_t byte = 0;  // the edge from the parent
  };
  const Node& node(uint32_t i) const { return nodes_[i]; }
  int32_t token(uint32_t i) const { return tokens_[i]; }

 private:
  int32_t vocab_size_ = 0;
  std::vector<Node> nodes_;  // node 0 is the root
  std::vector<int32_t> tokens_;
};

// Follows one generated text through a grammar. Not thread-safe; copyable
// (a forked sample copies its parent's state).
class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const Grammar> grammar);

  // Consumes `bytes`; false (state unchanged) when the grammar cannot
  // continue with them.
  bool Accept(std::string_view bytes);
  // The text so far is a complete match (end of sequence may come now).
  bool CanEnd() const;
  // Nothing but the end may come.
  bool Done() const;
  // Sets bit t of `allowed` (vocab_size bits) for every token whose bytes
  // may come next. End-of-sequence tokens are the caller's (CanEnd).
  void FillAllowed(const TokenTrie& trie, std::vector<uint64_t>* allowed);

  // How many stack nodes the matcher holds (for tests of its bounds).
  size_t num_nodes() const { return nodes_.size(); }
  // Forgets the masks of states seen before (to time a mask from scratch).
  void ClearMaskCache() { mask_cache_.clear(); }

 private:
  static constexpr int32_t kEmpty = -1;  // the empty stack: the match is complete
  static constexpr int32_t kDead = -2;   // a stack too deep to keep
  struct Node {
    uint32_t pos;
    int32_t next;
    int32_t depth;
  };

  int32_t Intern(uint32_t pos, int32_t next);
  // Adds to `out` the stacks reachable from `start` whose top is a byte set.
  void Closure(int32_t start, std::vector<int32_t>& out);
  // The stacks after `byte` from `stacks` (sorted, unique).
  void Advance(const std::vector<int32_t>& stacks, uint8_t byte, std::vector<int32_t>& out);
  void Walk(const TokenTrie& trie, uint32_t node, const std::vector<int32_t>& stacks,
            std::vector<uint64_t>& allowed, int depth);
  void Truncate(size_t num_nodes);

  std::shared_ptr<const Grammar> grammar_;
  std::vector<Node> nodes_;
  absl::flat_hash_map<uint64_t, int32_t> intern_;
  std::vector<int32_t> stacks_;  // the current parses
  // Starts an Advance: a new mark for visited stacks, a fresh work budget.
  void NewEpoch();

  std::vector<int32_t> work_;
  std::vector<uint32_t> mark_;  // per node: the epoch that last visited it
  uint32_t epoch_ = 0, empty_epoch_ = 0;
  int64_t budget_ = 0;
  int64_t walk_work_ = 0;
  std::vector<std::vector<int32_t>> scratch_;  // one stack set per trie depth
  // Masks of states seen before (a string's characters, list items...).
  std::vector<std::pair<std::vector<int32_t>, std::vector<uint64_t>>> mask_cache_;
};

}  // namespace ferry::structured
