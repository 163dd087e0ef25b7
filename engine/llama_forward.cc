#include "engine/llama_forward.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace ferry {

LlamaForward::LlamaForward(const Model& model, ThreadPool& pool, bool batch_invariant,
                           int max_ubatch_tokens)
    : model_(model), config_(model.config()), pool_(pool), batch_invariant_(batch_invariant),
      max_ubatch_tokens_(std::max(1, max_ubatch_tokens)),
      inv_freq_(model.config().RopeInverseFrequencies()) {}

KvCacheShape LlamaForward::KvShape(int block_size, int64_t num_blocks) const {
  KvCacheShape s;
  s.num_layers = config_.num_layers;
  s.num_kv_heads = config_.num_kv_heads;
  s.head_dim = config_.head_dim;
  s.block_size = block_size;
  s.num_blocks = num_blocks;
  return s;
}

namespace {

// Below this many values a per-token loop runs on the calling thread: waking
// the pool costs more (decode batches of a few tokens).
constexpr int64_t kMinParallelValues = 64 * 1024;

// Tokens of one MLP pass (see Forward).
constexpr int kMlpChunk = 256;

int64_t TokenGrain(int64_t values_per_token) {
  return std::max<int64_t>(1, kMinParallelValues / std::max<int64_t>(values_per_token, 1));
}

}  // namespace

absl::Status LlamaForward::Check(const ForwardBatch& b, const KvCache& kv) const {
  return ValidateForwardBatch(b, config_, kv.shape());
}

void LlamaForward::EnsureScratch(int n) {
  if (n <= capacity_) return;
  capacity_ = std::max(n, capacity_ * 2);
  const size_t c = capacity_;
  x_.resize(c * config_.hidden_size);
  xn_.resize(c * config_.hidden_size);
  q_.resize(c * config_.q_dim());
  k_.resize(c * config_.kv_dim());
  v_.resize(c * config_.kv_dim());
  attn_.resize(c * config_.q_dim());
  gate_.resize(std::min<size_t>(c, kMlpChunk) * config_.intermediate_size);
  up_.resize(std::min<size_t>(c, kMlpChunk) * config_.intermediate_size);
  logits_in_.resize(c * config_.hidden_size);
  token_seq_.resize(c);
}

void LlamaForward::ComputeRopeAngles(int num_tokens, std::span<const int32_t> positions) {
  const int pairs = config_.rope_dim / 2;
  rope_cs_.resize(size_t(num_tokens) * 2 * pairs);
  pool_.ParallelFor(
      num_tokens,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const double pos = positions[t];
          float* cs = &rope_cs_[size_t(t) * 2 * pairs];
          for (int i = 0; i < pairs; ++i) {
            double angle = pos * inv_freq_[i];
            cs[2 * i] = static_cast<float>(std::cos(angle));
            cs[2 * i + 1] = static_cast<float>(std::sin(angle));
          }
        }
      },
      TokenGrain(8 * pairs));
}

void LlamaForward::ApplyRope(int num_tokens) {
  const int hd = config_.head_dim;
  const int pairs = config_.rope_dim / 2;
  const bool interleaved = config_.rope_style == RopeStyle::kInterleaved;
  const int nq = config_.num_heads, nk = config_.num_kv_heads;
  pool_.ParallelFor(
      num_tokens,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const float* cs = &rope_cs_[size_t(t) * 2 * pairs];
          for (int h = 0; h < nq + nk; ++h) {
            float* v = h < nq ? &q_[(size_t(t) * nq + h) * hd] : &k_[(size_t(t) * nk + h - nq) * hd];
            for (int i = 0; i < pairs; ++i) {
              int a = interleaved ? 2 * i : i;
              int b = interleaved ? 2 * i + 1 : i + config_.rope_dim / 2;
              float c = cs[2 * i], s = cs[2 * i + 1];
              float x0 = v[a], x1 = v[b];
              v[a] = x0 * c - x1 * s;
              v[b] = x0 * s + x1 * c;
            }
          }
        }
      },
      TokenGrain(int64_t{nq + nk} * hd));
}

int32_t LlamaForward::LocalLen(const ForwardBatch& b, int seq) const {
  return b.local_lens.empty() ? b.seq_lens[seq] : std::min(b.seq_lens[seq], b.local_lens[seq]);
}

void LlamaForward::WriteKv(const ForwardBatch& b, KvCache& kv, int layer) {
  const int bs = kv.shape().block_size;
  const int kv_dim = config_.kv_dim();
  for (int seq = 0; seq < b.num_seqs(); ++seq) {
    const int32_t* table = b.block_indices.data() + b.block_indptr[seq];
    const int32_t local_len = LocalLen(b, seq);
    for (int t = b.query_start[seq]; t < b.query_start[seq + 1]; ++t) {
      int pos = b.positions[t];
      if (pos >= local_len) continue;  // a borrowed position: the lender writes it
      int64_t block = table[pos / bs];
      int slot = pos % bs;
      std::memcpy(kv.Keys(block, layer) + slot * kv_dim, &k_[size_t(t) * kv_dim], kv_dim * sizeof(float));
      std::memcpy(kv.Values(block, layer) + slot * kv_dim, &v_[size_t(t) * kv_dim], kv_dim * sizeof(float));
    }
  }
}

void LlamaForward::Attention(const ForwardBatch& b, const KvCache& kv, int layer) {
  const int n = b.num_tokens();
  const int nh = config_.num_heads;
  const int hd = config_.head_dim;
  const int group = config_.num_heads / config_.num_kv_heads;
  const int kv_dim = config_.kv_dim();
  const int bs = kv.shape().block_size;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Work items are (token, kv head): the query heads of one group share the
  // keys they read.
  const int64_t items = int64_t{n} * config_.num_kv_heads;
  pool_.ParallelFor(items, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      int t = static_cast<int>(item / config_.num_kv_heads);
      int g = static_cast<int>(item % config_.num_kv_heads);
      int seq = token_seq_[t];
      const int32_t* table = b.block_indices.data() + b.block_indptr[seq];
      const bool remote = RemoteOf(b, seq) != nullptr;
      // Causal: up to and including itself (its local part when remote).
      const int ctx = remote ? std::min(b.positions[t] + 1, LocalLen(b, seq)) : b.positions[t] + 1;
      if (static_cast<int>(scores.size()) < ctx * group) scores.resize(size_t(ctx) * group * 2);
      // out = Σ_p weights[p] · V[p] over the sequence's KV blocks, a block a call.
      auto weighted_values = [&](const float* weights, float* out) {
        std::fill(out, out + hd, 0.0f);
        for (int p = 0; p < ctx; p += bs) {
          cpu::AxpyRows(weights + p, kv.Values(table[p / bs], layer) + g * hd, kv_dim, std::min(bs, ctx - p), hd,
                        out);
        }
      };
      for (int j = 0; j < group; ++j) {
        const float* q = &q_[(size_t(t) * nh + g * group + j) * hd];
        float* sc = scores.data() + size_t(j) * ctx;
        for (int p = 0; p < ctx; p += bs) {
          cpu::DotRows(q, kv.Keys(table[p / bs], layer) + g * hd, kv_dim, std::min(bs, ctx - p), hd, scale,
                       sc + p);
        }
        if (remote) {
          // Unnormalized: MergeRemote adds the lenders' parts.
          const int64_t e = int64_t{t} * nh + g * group + j;
          WeightsFromScores(sc, ctx, part_local_.max[e], part_local_.sum[e]);
          weighted_values(sc, part_local_.values_of(e));
          continue;
        }
        cpu::Softmax(sc, ctx);
        weighted_values(sc, &attn_[(size_t(t) * nh + g * group + j) * hd]);
      }
    }
  });
}

void LlamaForward::MergeRemote(const ForwardBatch& b) {
  const int nh = config_.num_heads;
  const int hd = config_.head_dim;
  for (int seq = 0; seq < b.num_seqs(); ++seq) {
    RemoteKv* r = RemoteOf(b, seq);
    if (r == nullptr) continue;
    const int t0 = b.query_start[seq], t1 = b.query_start[seq + 1];
    r->Receive(part_remote_);
    const bool have_remote = part_remote_.count() == int64_t{t1 - t0} * nh && part_remote_.head_dim == hd;
    for (int t = t0; t < t1; ++t) {
      for (int h = 0; h < nh; ++h) {
        const int64_t e = int64_t{t} * nh + h;
        if (have_remote) {
          const int64_t er = int64_t{t - t0} * nh + h;
          MergePartial(part_local_.max[e], part_local_.sum[e], part_local_.values_of(e), part_remote_.max[er],
                       part_remote_.sum[er], part_remote_.values_of(er), hd);
        }
        NormalizePartial(part_local_.sum[e], part_local_.values_of(e), hd, &attn_[size_t(e) * hd]);
      }
    }
  }
}

absl::Status LlamaForward::Forward(const ForwardBatch& b, KvCache& kv, float* logits) {
  FERRY_RETURN_IF_ERROR(Check(b, kv));
  const int n = b.num_tokens();
  bool increasing = true;
  for (size_t r = 1; r < b.logits_indices.size(); ++r) increasing &= b.logits_indices[r - 1] < b.logits_indices[r];
  // Borrowed KV talks to its lenders once per layer for the whole step, and
  // logits rows out of token order would not come out per micro-batch: such
  // batches run in one pass.
  if (n <= max_ubatch_tokens_ || !b.remote.empty() || !increasing) {
    ForwardPass(b, kv, logits);
    return absl::OkStatus();
  }
  const int vocab = config_.vocab_size;
  size_t logits_row = 0;
  for (int u0 = 0; u0 < n; u0 += max_ubatch_tokens_) {
    const int u1 = std::min(n, u0 + max_ubatch_tokens_);
    // The sequences with tokens in [u0, u1), each with its tokens there; its
    // context ends after its last token in the micro-batch.
    ub_query_start_.assign(1, 0);
    ub_seq_lens_.clear();
    ub_block_indptr_.assign(1, 0);
    ub_block_indices_.clear();
    for (int seq = 0; seq < b.num_seqs(); ++seq) {
      const int t0 = std::max(u0, b.query_start[seq]), t1 = std::min(u1, b.query_start[seq + 1]);
      if (t0 >= t1) continue;
      ub_query_start_.push_back(ub_query_start_.back() + (t1 - t0));
      ub_seq_lens_.push_back(t1 == b.query_start[seq + 1] ? b.seq_lens[seq] : b.positions[t1 - 1] + 1);
      ub_block_indices_.insert(ub_block_indices_.end(), b.block_indices.begin() + b.block_indptr[seq],
                               b.block_indices.begin() + b.block_indptr[seq + 1]);
      ub_block_indptr_.push_back(static_cast<int32_t>(ub_block_indices_.size()));
    }
    ub_logits_.clear();
    const size_t first_row = logits_row;
    while (logits_row < b.logits_indices.size() && b.logits_indices[logits_row] < u1) {
      ub_logits_.push_back(b.logits_indices[logits_row++] - u0);
    }
    ForwardBatch ub{b.tokens.subspan(u0, u1 - u0), b.positions.subspan(u0, u1 - u0), ub_query_start_,
                    ub_seq_lens_, ub_block_indptr_, ub_block_indices_, ub_logits_};
    ForwardPass(ub, kv, logits + first_row * vocab);
  }
  return absl::OkStatus();
}

void LlamaForward::ForwardPass(const ForwardBatch& b, KvCache& kv, float* logits) {
  const int n = b.num_tokens();
  const int h = config_.hidden_size;
  const ModelWeights& w = model_.weights();
  EnsureScratch(n);
  for (int seq = 0; seq < b.num_seqs(); ++seq) {
    for (int t = b.query_start[seq]; t < b.query_start[seq + 1]; ++t) token_seq_[t] = seq;
  }
  for (int t = 0; t < n; ++t) cpu::DequantizeRow(w.embedding, b.tokens[t], &x_[size_t(t) * h]);
  if (!b.remote.empty()) part_local_.Reset(int64_t{n} * config_.num_heads, config_.head_dim);

  ComputeRopeAngles(n, b.positions);
  auto rms_all = [&](const float* weight) {
    pool_.ParallelFor(
        n,
        [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t) {
            cpu::RmsNorm(&x_[t * h], weight, h, config_.rms_norm_eps, &xn_[t * h]);
          }
        },
        TokenGrain(h));
  };
  for (int l = 0; l < config_.num_layers; ++l) {
    const LayerWeights& L = w.layers[l];
    rms_all(L.attn_norm);
    const cpu::MatMulOut qkv[] = {{&L.wq, q_.data(), L.bq}, {&L.wk, k_.data(), L.bk}, {&L.wv, v_.data(), L.bv}};
    cpu::MatMulMany(qkv, 3, xn_.data(), n, pool_, batch_invariant_);
    ApplyRope(n);
    WriteKv(b, kv, l);
    // Lenders work on their part while the local part runs here.
    for (int seq = 0; seq < b.num_seqs(); ++seq) {
      if (RemoteKv* r = RemoteOf(b, seq)) {
        const int t0 = b.query_start[seq];
        r->Send(l, b.positions.subspan(t0, b.query_start[seq + 1] - t0), &q_[size_t(t0) * config_.q_dim()],
                &k_[size_t(t0) * config_.kv_dim()], &v_[size_t(t0) * config_.kv_dim()]);
      }
    }
    Attention(b, kv, l);
    MergeRemote(b);
    // Residual adds go through xn_ as the projection's output.
    cpu::MatMul(L.wo, attn_.data(), n, xn_.data(), nullptr, pool_, batch_invariant_);
    for (size_t i = 0; i < size_t(n) * h; ++i) x_[i] += xn_[i];
    rms_all(L.ffn_norm);
    // The MLP runs kMlpChunk tokens at a time, so its scratch (two
    // intermediate-size rows a token, the largest) stays small for long
    // prefills; each chunk still has rows enough for the GEMM. Rows are
    // independent, so the results do not change. The down projection's
    // output overwrites the chunk's own input rows in xn_, already used.
    const int64_t ff = config_.intermediate_size;
    for (int c0 = 0; c0 < n; c0 += kMlpChunk) {
      const int c = std::min(n - c0, kMlpChunk);
      float* xc = &xn_[size_t(c0) * h];
      const cpu::MatMulOut gate_up[] = {{&L.w_gate, gate_.data(), nullptr}, {&L.w_up, up_.data(), nullptr}};
      cpu::MatMulMany(gate_up, 2, xc, c, pool_, batch_invariant_);
      pool_.ParallelFor(
          c,
          [&](int64_t t0, int64_t t1) {
            cpu::SiluMul(&gate_[t0 * ff], &up_[t0 * ff], (t1 - t0) * ff, &gate_[t0 * ff]);
          },
          TokenGrain(ff));
      cpu::MatMul(L.w_down, gate_.data(), c, xc, nullptr, pool_, batch_invariant_);
    }
    for (size_t i = 0; i < size_t(n) * h; ++i) x_[i] += xn_[i];
  }
  const int rows = static_cast<int>(b.logits_indices.size());
  if (rows == 0) return;
  for (int r = 0; r < rows; ++r) {
    cpu::RmsNorm(&x_[size_t(b.logits_indices[r]) * h], w.final_norm, h, config_.rms_norm_eps,
                 &logits_in_[size_t(r) * h]);
  }
  cpu::MatMul(w.output, logits_in_.data(), rows, logits, nullptr, pool_, batch_invariant_);
}

}  // namespace ferry
