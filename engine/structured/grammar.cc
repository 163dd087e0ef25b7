#include "engine/structured/grammar.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ferry::structured {
namespace {

// Bounds that keep a hostile schema or a runaway generation from using
// unbounded memory or time.
constexpr size_t kMaxSlots = 1 << 20;
constexpr int kMaxStackDepth = 4096;
constexpr size_t kMaxStacks = 4096;
constexpr size_t kMaskCacheEntries = 32;
constexpr int64_t kMaxClosureWork = 1 << 14;  // stacks visited by one Advance
constexpr int64_t kMaxWalkWork = 1 << 24;     // by one mask

}  // namespace

int GrammarBuilder::NewRule() {
  rules_.emplace_back();
  return static_cast<int>(rules_.size()) - 1;
}

void GrammarBuilder::AddAlternative(int rule, Sequence seq) {
  rules_[static_cast<size_t>(rule)].push_back(std::move(seq));
}

Element GrammarBuilder::Bytes(const ByteSet& set) {
  std::string key(reinterpret_cast<const char*>(set.bits.data()), sizeof(set.bits));
  auto [it, inserted] = set_index_.try_emplace(key, static_cast<int32_t>(sets_.size()));
  if (inserted) sets_.push_back(set);
  return {Element::Kind::kBytes, it->second};
}

Sequence GrammarBuilder::Literal(std::string_view text) {
  Sequence seq;
  seq.reserve(text.size());
  for (char c : text) seq.push_back(Byte(static_cast<uint8_t>(c)));
  return seq;
}

int GrammarBuilder::Choice(std::vector<Sequence> alternatives) {
  int rule = NewRule();
  for (Sequence& alt : alternatives) AddAlternative(rule, std::move(alt));
  return rule;
}

int GrammarBuilder::Repeat(const Sequence& body_in, int min, int max) {
  // A body of several elements becomes one rule, so that copies of it stay
  // one element each.
  Sequence body = body_in;
  if (body.size() > 1) body = {Ref(Choice({body_in}))};
  // Unbounded tail: star -> body star | ().
  int tail;
  if (max < 0) {
    tail = NewRule();
    Sequence loop = body;
    loop.push_back(Ref(tail));
    AddAlternative(tail, std::move(loop));
    AddAlternative(tail, {});
  } else {
    // Up to (max - min) more: opt_k -> body opt_{k-1} | (), opt_0 -> ().
    tail = NewRule();
    AddAlternative(tail, {});
    for (int k = 1; k <= max - min; ++k) {
      int next = NewRule();
      Sequence more = body;
      more.push_back(Ref(tail));
      AddAlternative(next, std::move(more));
      AddAlternative(next, {});
      tail = next;
    }
  }
  Sequence seq;
  for (int i = 0; i < min; ++i) seq.insert(seq.end(), body.begin(), body.end());
  seq.push_back(Ref(tail));
  return Choice({std::move(seq)});
}

absl::Status GrammarBuilder::CheckLeftRecursion() const {
  const size_t n = rules_.size();
  // Rules that can match nothing (a few passes reach a fixpoint for the
  // rules the compilers build; one left unmarked only loses the check).
  std::vector<char> nullable(n, 0);
  for (int pass = 0, changed = 1; changed && pass < 64; ++pass) {
    changed = 0;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const Sequence& alt : rules_[r]) {
        bool all = true;
        for (const Element& e : alt) {
          all = all && e.kind == Element::Kind::kRule && nullable[static_cast<size_t>(e.arg)];
        }
        if (all) {
          nullable[r] = 1;
          changed = 1;
          break;
        }
      }
    }
  }
  // Edges to the rules an alternative can start with; an edge "grows" the
  // parse stack unless the reference ends its alternative.
  std::vector<std::vector<std::pair<int, bool>>> edges(n);
  for (size_t r = 0; r < n; ++r) {
    for (const Sequence& alt : rules_[r]) {
      for (size_t k = 0; k < alt.size(); ++k) {
        if (alt[k].kind != Element::Kind::kRule) break;
        edges[r].emplace_back(alt[k].arg, k + 1 < alt.size());
        if (!nullable[static_cast<size_t>(alt[k].arg)]) break;
      }
    }
  }
  // Strongly connected components (iterative Tarjan): a growing edge inside
  // one is left recursion, which would deepen the stack without end.
  std::vector<int> index(n, -1), low(n, 0), comp(n, -1), stack;
  std::vector<char> on_stack(n, 0);
  std::vector<std::pair<size_t, size_t>> frames;  // rule, next edge
  int next_index = 0, next_comp = 0;
  for (size_t start = 0; start < n; ++start) {
    if (index[start] >= 0) continue;
    frames.emplace_back(start, 0);
    while (!frames.empty()) {
      auto& [v, e] = frames.back();
      if (e == 0 && index[v] < 0) {
        index[v] = low[v] = next_index++;
        stack.push_back(static_cast<int>(v));
        on_stack[v] = 1;
      }
      if (e < edges[v].size()) {
        const auto w = static_cast<size_t>(edges[v][e++].first);
        if (index[w] < 0) {
          frames.emplace_back(w, 0);
        } else if (on_stack[w]) {
          low[v] = std::min(low[v], index[w]);
        }
        continue;
      }
      if (low[v] == index[v]) {
        while (true) {
          const auto w = static_cast<size_t>(stack.back());
          stack.pop_back();
          on_stack[w] = 0;
          comp[w] = next_comp;
          if (w == v) break;
        }
        ++next_comp;
      }
      const size_t done = v;
      frames.pop_back();
      if (!frames.empty()) low[frames.back().first] = std::min(low[frames.back().first], low[done]);
    }
  }
  for (size_t r = 0; r < n; ++r) {
    for (const auto& [t, grows] : edges[r]) {
      if (grows && comp[r] == comp[static_cast<size_t>(t)]) {
        return absl::InvalidArgumentError(absl::StrCat("the grammar is left-recursive (rule ", r,
                                                       " can start with itself); use repetition"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Grammar>> GrammarBuilder::Build(int root) const {
  if (root < 0 || root >= NumRules()) return absl::InvalidArgumentError("grammar has no root rule");
  for (const auto& rule : rules_) {
    for (const Sequence& alt : rule) {
      for (const Element& e : alt) {
        if (e.kind == Element::Kind::kRule && (e.arg < 0 || e.arg >= NumRules())) {
          return absl::InvalidArgumentError("grammar rule refers to a missing rule");
        }
      }
    }
  }
  if (absl::Status s = CheckLeftRecursion(); !s.ok()) return s;
  auto g = std::make_shared<Grammar>();
  g->root_ = root;
  g->sets_ = sets_;
  g->rule_begin_.push_back(0);
  for (size_t r = 0; r < rules_.size(); ++r) {
    if (rules_[r].empty())
      return absl::InvalidArgumentError(absl::StrCat("grammar rule ", r, " has no alternative"));
    for (const Sequence& alt : rules_[r]) {
      g->alt_starts_.push_back(static_cast<uint32_t>(g->slots_.size()));
      for (const Element& e : alt) {
        if (e.kind == Element::Kind::kRule && (e.arg < 0 || e.arg >= NumRules())) {
          return absl::InvalidArgumentError(
              absl::StrCat("grammar rule ", r, " refers to a missing rule"));
        }
        g->slots_.push_back({e.kind == Element::Kind::kRule ? Grammar::Slot::Kind::kRule
                                                            : Grammar::Slot::Kind::kBytes,
                             e.arg});
      }
      g->slots_.push_back({Grammar::Slot::Kind::kEnd, 0});
      if (g->slots_.size() > kMaxSlots) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the structured-output grammar is too large (over ", kMaxSlots, " elements)"));
      }
    }
    g->rule_begin_.push_back(static_cast<uint32_t>(g->alt_starts_.size()));
  }
  return std::shared_ptr<const Grammar>(std::move(g));
}

TokenTrie::TokenTrie(const std::vector<std::string>& token_bytes)
    : vocab_size_(static_cast<int32_t>(token_bytes.size())) {
  // A pointer trie first, then flattened breadth-first so that each node's
  // children are contiguous.
  struct Temp {
    std::vector<std::pair<uint8_t, uint32_t>> children;
    std::vector<int32_t> tokens;
  };
  std::vector<Temp> temp(1);
  for (size_t id = 0; id < token_bytes.size(); ++id) {
    const std::string& bytes = token_bytes[id];
    if (bytes.empty()) continue;
    uint32_t at = 0;
    for (char c : bytes) {
      const uint8_t b = static_cast<uint8_t>(c);
      auto& ch = temp[at].children;
      auto it = std::find_if(ch.begin(), ch.end(), [b](const auto& p) { return p.first == b; });
      if (it == ch.end()) {
        temp.emplace_back();
        temp[at].children.emplace_back(b, static_cast<uint32_t>(temp.size() - 1));
        at = static_cast<uint32_t>(temp.size() - 1);
      } else {
        at = it->second;
      }
    }
    temp[at].tokens.push_back(static_cast<int32_t>(id));
  }
  nodes_.resize(temp.size());
  std::deque<std::pair<uint32_t, uint32_t>> queue{{0, 0}};  // temp index, flat index
  uint32_t next_free = 1;
  while (!queue.empty()) {
    auto [t, f] = queue.front();
    queue.pop_front();
    Node& n = nodes_[f];
    n.first_token = static_cast<uint32_t>(tokens_.size());
    n.num_tokens = static_cast<uint32_t>(temp[t].tokens.size());
    tokens_.insert(tokens_.end(), temp[t].tokens.begin(), temp[t].tokens.end());
    auto children = temp[t].children;
    std::sort(children.begin(), children.end());
    n.first_child = next_free;
    n.num_children = static_cast<uint32_t>(children.size());
    for (const auto& [b, child] : children) {
      nodes_[next_free].byte = b;
      queue.emplace_back(child, next_free++);
    }
  }
}

Matcher::Matcher(std::shared_ptr<const Grammar> grammar) : grammar_(std::move(grammar)) {
  const Grammar& g = *grammar_;
  NewEpoch();
  for (uint32_t start : g.alternatives(g.root())) Closure(Intern(start, kEmpty), stacks_);
  std::sort(stacks_.begin(), stacks_.end());
  stacks_.erase(std::unique(stacks_.begin(), stacks_.end()), stacks_.end());
}

int32_t Matcher::Intern(uint32_t pos, int32_t next) {
  if (next == kDead) return kDead;
  const int32_t depth = next == kEmpty ? 1 : nodes_[static_cast<size_t>(next)].depth + 1;
  if (depth > kMaxStackDepth) return kDead;
  const uint64_t key = (uint64_t{pos} << 32) | static_cast<uint32_t>(next);
  auto [it, inserted] = intern_.try_emplace(key, static_cast<int32_t>(nodes_.size()));
  if (inserted) {
    nodes_.push_back({pos, next, depth});
    mark_.push_back(0);
  }
  return it->second;
}

void Matcher::Closure(int32_t start, std::vector<int32_t>& out) {
  const Grammar& g = *grammar_;
  work_.clear();
  work_.push_back(start);
  while (!work_.empty()) {
    const int32_t n = work_.back();
    work_.pop_back();
    if (n == kDead) continue;
    // Each stack once per Advance: this also stops cycles through rules
    // that match nothing.
    if (n == kEmpty) {
      if (empty_epoch_ != epoch_) out.push_back(kEmpty);
      empty_epoch_ = epoch_;
      continue;
    }
    if (mark_[static_cast<size_t>(n)] == epoch_) continue;
    mark_[static_cast<size_t>(n)] = epoch_;
    // A pathological grammar (quantifiers of quantifiers of nullable
    // parts) can reach very many stacks; past the budget the rest are
    // dropped, so a step stays bounded.
    if (--budget_ < 0) {
      work_.clear();
      break;
    }
    const Node node = nodes_[static_cast<size_t>(n)];
    const Grammar::Slot& s = g.slot(node.pos);
    switch (s.kind) {
      case Grammar::Slot::Kind::kEnd:
        work_.push_back(node.next);
        break;
      case Grammar::Slot::Kind::kBytes:
        if (out.size() < kMaxStacks) out.push_back(n);
        break;
      case Grammar::Slot::Kind::kRule: {
        // A reference at the end of its alternative continues straight
        // into the parent: right recursion keeps the stack flat.
        const int32_t cont = g.slot(node.pos + 1).kind == Grammar::Slot::Kind::kEnd
                                 ? node.next
                                 : Intern(node.pos + 1, node.next);
        for (uint32_t start_pos : g.alternatives(s.arg)) work_.push_back(Intern(start_pos, cont));
        break;
      }
    }
  }
}

void Matcher::NewEpoch() {
  if (++epoch_ == 0) {  // wrapped: forget every mark
    std::fill(mark_.begin(), mark_.end(), 0);
    empty_epoch_ = 0;
    epoch_ = 1;
  }
  budget_ = kMaxClosureWork;
}

void Matcher::Advance(const std::vector<int32_t>& stacks, uint8_t byte, std::vector<int32_t>& out) {
  out.clear();
  NewEpoch();
  const Grammar& g = *grammar_;
  for (int32_t n : stacks) {
    if (n < 0) continue;
    const Node node = nodes_[static_cast<size_t>(n)];
    if (!g.bytes(g.slot(node.pos).arg).Has(byte)) continue;
    Closure(Intern(node.pos + 1, node.next), out);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
}

bool Matcher::Accept(std::string_view bytes) {
  std::vector<int32_t> current = stacks_, next;
  for (char c : bytes) {
    Advance(current, static_cast<uint8_t>(c), next);
    if (next.empty()) return false;
    current.swap(next);
  }
  stacks_ = std::move(current);
  return true;
}

bool Matcher::CanEnd() const { return !stacks_.empty() && stacks_.front() == kEmpty; }

bool Matcher::Done() const { return stacks_.size() == 1 && stacks_.front() == kEmpty; }

void Matcher::Truncate(size_t num_nodes) {
  for (size_t i = num_nodes; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    intern_.erase((uint64_t{n.pos} << 32) | static_cast<uint32_t>(n.next));
  }
  nodes_.resize(num_nodes);
  mark_.resize(num_nodes);
}

void Matcher::Walk(const TokenTrie& trie, uint32_t index, const std::vector<int32_t>& stacks,
                   std::vector<uint64_t>& allowed, int depth) {
  const TokenTrie::Node& node = trie.node(index);
  for (uint32_t i = 0; i < node.num_tokens; ++i) {
    const auto t = static_cast<uint32_t>(trie.token(node.first_token + i));
    allowed[t >> 6] |= uint64_t{1} << (t & 63);
  }
  if (node.num_children == 0) return;
  // Which bytes any stack can take next: children outside it are skipped
  // without touching the stacks.
  ByteSet next_bytes;
  for (int32_t n : stacks) {
    if (n >= 0)
      next_bytes.Merge(grammar_->bytes(grammar_->slot(nodes_[static_cast<size_t>(n)].pos).arg));
  }
  if (next_bytes.Empty()) return;
  if (scratch_.size() <= static_cast<size_t>(depth))
    scratch_.resize(static_cast<size_t>(depth) + 1);
  for (uint32_t c = 0; c < node.num_children; ++c) {
    const uint32_t child = node.first_child + c;
    if (!next_bytes.Has(trie.node(child).byte)) continue;
    // The set is moved out of its scratch slot while the deeper levels run
    // (they may grow scratch_), then given back with its capacity.
    if (walk_work_ > kMaxWalkWork) return;  // a pathological grammar: the mask stays partial
    std::vector<int32_t> next = std::move(scratch_[static_cast<size_t>(depth)]);
    Advance(stacks, trie.node(child).byte, next);
    walk_work_ += kMaxClosureWork - std::max<int64_t>(budget_, 0) + 1;
    if (!next.empty()) Walk(trie, child, next, allowed, depth + 1);
    scratch_[static_cast<size_t>(depth)] = std::move(next);
  }
}

void Matcher::FillAllowed(const TokenTrie& trie, std::vector<uint64_t>* allowed) {
  allowed->assign((static_cast<size_t>(trie.vocab_size()) + 63) / 64, 0);
  for (const auto& [key, mask] : mask_cache_) {
    if (key == stacks_ && mask.size() == allowed->size()) {
      *allowed = mask;
      return;
    }
  }
  const size_t committed = nodes_.size();
  walk_work_ = 0;
  Walk(trie, 0, stacks_, *allowed, 0);
  Truncate(committed);
  if (mask_cache_.size() >= kMaskCacheEntries) mask_cache_.erase(mask_cache_.begin());
  mask_cache_.emplace_back(stacks_, *allowed);
}

}  // namespace ferry::structured
