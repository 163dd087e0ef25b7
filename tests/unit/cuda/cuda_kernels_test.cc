// Every CUDA kernel against a CPU reference in double precision (or the CPU
// backend's own kernels). Skipped where no CUDA device is visible.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/api.h"
#include "gtest/gtest.h"

namespace ferry::cuda {
namespace {

#define SKIP_WITHOUT_GPU()                                             \
  if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device is visible; skipping"

#define ASSERT_CUDA(expr)                       \
  do {                                          \
    ::ferry::cuda::Error e_ = (expr);           \
    ASSERT_TRUE(e_.empty()) << #expr << ": " << e_; \
  } while (0)

// Device buffer freed at scope exit.
struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
  explicit Buf(size_t n) : bytes(n) {
    EXPECT_TRUE(Malloc(&p, n).empty());
    // Poison: every output element must be written.
    Memset(p, 0x7f, n, nullptr);
  }
  ~Buf() { Free(p); }
  template <typename T> T* as() const { return static_cast<T*>(p); }
};

std::vector<char> ToDtype(DType t, const std::vector<float>& v) {
  std::vector<char> out(v.size() * DTypeSize(t));
  ConvertFromF32(t, v.data(), v.size(), out.data());
  return out;
}
std::vector<float> RoundTrip(DType t, const std::vector<float>& v) {
  std::vector<char> b = ToDtype(t, v);
  std::vector<float> out(v.size());
  ConvertToF32(t, b.data(), v.size(), out.data());
  return out;
}
Buf Upload(DType t, const std::vector<float>& v) {
  std::vector<char> b = ToDtype(t, v);
  Buf d(b.size());
  EXPECT_TRUE(CopyToDevice(d.p, b.data(), b.size()).empty());
  return d;
}
template <typename T>
Buf UploadRaw(const std::vector<T>& v) {
  Buf d(std::max<size_t>(1, v.size() * sizeof(T)));
  EXPECT_TRUE(CopyToDevice(d.p, v.data(), v.size() * sizeof(T)).empty());
  return d;
}
std::vector<float> Download(DType t, const Buf& d, size_t n) {
  std::vector<char> b(n * DTypeSize(t));
  EXPECT_TRUE(CopyToHost(b.data(), d.p, b.size()).empty());
  EXPECT_TRUE(DeviceSynchronize().empty());
  std::vector<float> out(n);
  ConvertToF32(t, b.data(), n, out.data());
  return out;
}
template <typename T>
std::vector<T> DownloadRaw(const Buf& d, size_t n) {
  std::vector<T> out(n);
  EXPECT_TRUE(CopyToHost(out.data(), d.p, n * sizeof(T)).empty());
  EXPECT_TRUE(DeviceSynchronize().empty());
  return out;
}
std::vector<float> Random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// ‖a − b‖ / ‖b‖, NaN-aware.
double RelError(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

double Tolerance(DType t) { return t == DType::kF32 ? 1e-5 : t == DType::kBF16 ? 1.5e-2 : 3e-3; }

// A paged KV cache with random contents and a random block table per
// sequence; host copies (rounded to the dtype) for the reference.
struct PagedKv {
  KvLayout layout;
  int64_t num_blocks = 0;
  std::vector<float> host;  // the whole cache, dtype-rounded
  std::vector<int32_t> indptr{0}, indices;
  std::unique_ptr<Buf> dev;

  PagedKv(DType t, int layers, int kv_heads, int hd, int bs, const std::vector<int>& seq_lens, std::mt19937& rng) {
    layout.num_layers = layers;
    layout.num_kv_heads = kv_heads;
    layout.head_dim = hd;
    layout.block_size = bs;
    for (int len : seq_lens) num_blocks += (len + bs - 1) / bs;
    num_blocks += 3;  // unused blocks in between
    std::vector<int32_t> perm(num_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    size_t next = 0;
    for (int len : seq_lens) {
      for (int b = 0; b < (len + bs - 1) / bs; ++b) indices.push_back(perm[next++]);
      indptr.push_back(static_cast<int32_t>(indices.size()));
    }
    host = RoundTrip(t, Random(size_t(num_blocks) * layout.block_elems(), rng));
    dev = std::make_unique<Buf>(Upload(t, host));
    layout.base = dev->p;
  }
  const float* K(int seq, int pos, int layer, int kvh) const {
    int32_t block = indices[indptr[seq] + pos / layout.block_size];
    return host.data() + block * layout.block_elems() + layout.k_offset(layer) +
           (pos % layout.block_size) * layout.num_kv_heads * layout.head_dim + kvh * layout.head_dim;
  }
  const float* V(int seq, int pos, int layer, int kvh) const {
    return K(seq, pos, layer, kvh) + (layout.v_offset(layer) - layout.k_offset(layer));
  }
};

// out[t, h] = softmax(q·K[0..pos]ᵀ · scale) · V in double.
std::vector<double> ReferenceAttention(const std::vector<float>& q, const PagedKv& kv, int layer, int num_heads,
                                       const std::vector<int32_t>& token_seq, const std::vector<int32_t>& positions,
                                       float scale) {
  const int hd = kv.layout.head_dim, group = num_heads / kv.layout.num_kv_heads;
  std::vector<double> out(q.size());
  for (size_t t = 0; t < token_seq.size(); ++t) {
    for (int h = 0; h < num_heads; ++h) {
      const float* qv = &q[(t * num_heads + h) * hd];
      const int ctx = positions[t] + 1;
      std::vector<double> s(ctx);
      double mx = -INFINITY;
      for (int p = 0; p < ctx; ++p) {
        const float* k = kv.K(token_seq[t], p, layer, h / group);
        double d = 0;
        for (int i = 0; i < hd; ++i) d += double(qv[i]) * k[i];
        s[p] = d * scale;
        mx = std::max(mx, s[p]);
      }
      double z = 0;
      for (double& x : s) z += (x = std::exp(x - mx));
      for (int p = 0; p < ctx; ++p) {
        const float* v = kv.V(token_seq[t], p, layer, h / group);
        for (int i = 0; i < hd; ++i) out[(t * num_heads + h) * hd + i] += s[p] / z * v[i];
      }
    }
  }
  return out;
}

struct AttnCase {
  DType dtype;
  int head_dim;
  int num_heads;
  int num_kv_heads;
  std::vector<int> seq_lens;
  float unified_max;  // NaN: off
};

void RunDecodeCase(const AttnCase& c, bool prefill, bool tile_kernel = true, int variant = 0) {
  std::mt19937 rng(1234 + c.head_dim + c.num_heads * 7 + static_cast<int>(c.seq_lens.size()));
  const int layers = 2, layer = 1, bs = 16;
  PagedKv kv(c.dtype, layers, c.num_kv_heads, c.head_dim, bs, c.seq_lens, rng);
  // Decode: one query per sequence at its last position. Prefill: the last
  // `chunk` tokens of each sequence (the rest is cached prefix).
  std::vector<int32_t> token_seq, positions;
  for (size_t s = 0; s < c.seq_lens.size(); ++s) {
    const int len = c.seq_lens[s];
    const int chunk = prefill ? std::min(len, 1 + len / 2) : 1;
    for (int p = len - chunk; p < len; ++p) {
      token_seq.push_back(static_cast<int32_t>(s));
      positions.push_back(p);
    }
  }
  const int n = static_cast<int>(token_seq.size());
  std::vector<float> q = RoundTrip(c.dtype, Random(size_t(n) * c.num_heads * c.head_dim, rng));
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  std::vector<double> ref = ReferenceAttention(q, kv, layer, c.num_heads, token_seq, positions, scale);

  Buf dq = Upload(c.dtype, q);
  Buf dout(q.size() * DTypeSize(c.dtype));
  Buf dseq = UploadRaw(token_seq), dpos = UploadRaw(positions), dindptr = UploadRaw(kv.indptr),
      dindices = UploadRaw(kv.indices);
  AttentionParams p;
  p.q = dq.p;
  p.out = dout.p;
  p.kv = kv.layout;
  p.layer = layer;
  p.num_heads = c.num_heads;
  p.scale = scale;
  p.token_seq = dseq.as<int32_t>();
  p.positions = dpos.as<int32_t>();
  p.block_indptr = dindptr.as<int32_t>();
  p.block_indices = dindices.as<int32_t>();
  p.unified_max = c.unified_max;
  p.decode_variant = variant;
  DeviceProps props;
  ASSERT_CUDA(GetDeviceProps(0, &props));
  p.sm_count = props.sm_count;
  std::unique_ptr<Buf> rows, ws, tiles;
  if (prefill && tile_kernel) {
    std::vector<int32_t> t;
    for (int i = 0; i < n;) {
      int j = i;
      while (j < n && token_seq[j] == token_seq[i] && j - i < 64) ++j;
      t.insert(t.end(), {token_seq[i], i, j});
      i = j;
    }
    tiles = std::make_unique<Buf>(UploadRaw(t));
    p.tiles = tiles->as<int32_t>();
    p.num_tiles = static_cast<int>(t.size() / 3);
    ASSERT_CUDA(LaunchPrefillAttention(c.dtype, p, nullptr));
  } else {
    std::vector<int32_t> r(n);
    std::iota(r.begin(), r.end(), 0);
    rows = std::make_unique<Buf>(r.size() * 4);
    ASSERT_CUDA(CopyToDevice(rows->p, r.data(), r.size() * 4));
    p.rows = rows->as<int32_t>();
    p.num_rows = n;
    p.max_context = *std::max_element(c.seq_lens.begin(), c.seq_lens.end());
    p.workspace_bytes = AttentionWorkspaceBytes(n, c.num_heads, c.num_kv_heads, c.head_dim, p.max_context,
                                                props.sm_count);
    ws = std::make_unique<Buf>(std::max<size_t>(p.workspace_bytes, 16));
    p.workspace = ws->p;
    ASSERT_CUDA(LaunchDecodeAttention(c.dtype, p, nullptr));
  }
  ASSERT_CUDA(DeviceSynchronize());
  std::vector<float> got = Download(c.dtype, dout, q.size());
  EXPECT_LT(RelError(got, ref), Tolerance(c.dtype))
      << DTypeName(c.dtype) << " hd=" << c.head_dim << " heads=" << c.num_heads << "/" << c.num_kv_heads
      << " variant=" << variant;
}

TEST(CudaAttention, DecodeMatchesReferenceAcrossDtypesHeadSizesAndContexts) {
  SKIP_WITHOUT_GPU();
  const float off = std::numeric_limits<float>::quiet_NaN();
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int hd : {8, 32, 64, 128}) {
      // Every kernel variant: the two-pass default and the one-pass kernel
      // everywhere, all tuning variants where they are built.
      std::vector<int> variants = {0, 4};
      if (t == DType::kBF16 && (hd == 64 || hd == 128)) variants = {1, 2, 3, 4, 5, 6};
      for (int v : variants) {
        RunDecodeCase({t, hd, 8, 4, {1, 17, 300}, off}, false, true, v);       // GQA 2
        RunDecodeCase({t, hd, 32, 4, {5000, 33, 1024}, off}, false, true, v);  // GQA 8, long context (splits)
        RunDecodeCase({t, hd, 7, 7, {2000}, off}, false, true, v);             // MHA, odd head count
        RunDecodeCase({t, hd, 28, 4, {700, 1}, off}, false, true, v);          // GQA 7 (groups split across CTAs)
        RunDecodeCase({t, hd, 16, 2, {40000}, off}, false, true, v);           // GQA 8, one very long context
      }
    }
  }
}

TEST(CudaAttention, UnifiedMaxMatchesExactAndFallsBackOnOverflow) {
  SKIP_WITHOUT_GPU();
  // A unified max near the real scores, one far below them (exp would
  // overflow) and one far above (everything would underflow).
  for (float phi : {2.0f, -500.0f, 500.0f}) {
    RunDecodeCase({DType::kBF16, 64, 32, 4, {4096, 100}, phi}, false);
    RunDecodeCase({DType::kF32, 128, 8, 8, {3000}, phi}, false);
  }
}

TEST(CudaAttention, PrefillOverCachedPrefixMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (DType t : {DType::kBF16, DType::kF16}) {
    for (int hd : {64, 128}) {
      ASSERT_TRUE(HasPrefillKernel(t, hd));
      RunDecodeCase({t, hd, 8, 2, {1, 63, 64, 65, 300}, 0}, true);
      RunDecodeCase({t, hd, 32, 4, {2048}, 0}, true);
    }
  }
  // The decode kernel also computes prefill tokens (fp32, other head sizes).
  RunDecodeCase({DType::kF32, 32, 8, 4, {100, 9}, std::numeric_limits<float>::quiet_NaN()}, true, false);
  RunDecodeCase({DType::kBF16, 8, 8, 4, {70}, std::numeric_limits<float>::quiet_NaN()}, true, false);
}

TEST(CudaKernels, AddRmsNormMatchesReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    const int n = 5, h = 768;
    std::vector<float> res = Random(size_t(n) * h, rng), delta = RoundTrip(t, Random(size_t(n) * h, rng)),
                       w = Random(h, rng);
    Buf dres = UploadRaw(res), ddelta = Upload(t, delta), dw = UploadRaw(w), dout(size_t(n) * h * DTypeSize(t));
    ASSERT_CUDA(LaunchAddRmsNorm(t, dres.as<float>(), ddelta.p, dw.as<float>(), nullptr, n, h, 1e-5f, dout.p,
                                 nullptr));
    std::vector<float> got = Download(t, dout, size_t(n) * h);
    std::vector<float> got_res = DownloadRaw<float>(dres, size_t(n) * h);
    std::vector<double> ref(size_t(n) * h), ref_res(size_t(n) * h);
    for (int r = 0; r < n; ++r) {
      double ss = 0;
      for (int i = 0; i < h; ++i) {
        ref_res[r * h + i] = double(res[r * h + i]) + delta[r * h + i];
        ss += ref_res[r * h + i] * ref_res[r * h + i];
      }
      double inv = 1.0 / std::sqrt(ss / h + 1e-5);
      for (int i = 0; i < h; ++i) ref[r * h + i] = ref_res[r * h + i] * inv * w[i];
    }
    EXPECT_LT(RelError(got_res, ref_res), 1e-6);
    EXPECT_LT(RelError(got, ref), t == DType::kF32 ? 1e-6 : 1e-2) << DTypeName(t);
  }
}

TEST(CudaKernels, RopeWritesRotatedKeysAndValuesIntoTheirSlots) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (bool interleaved : {false, true}) {
    const DType t = DType::kF32;
    const int heads = 4, kvh = 2, hd = 64, n = 3, bs = 16;
    const int qd = heads * hd, kvd = kvh * hd;
    PagedKv kv(t, 2, kvh, hd, bs, {40}, rng);
    std::vector<float> qkv = Random(size_t(n) * (qd + 2 * kvd), rng);
    std::vector<int32_t> pos = {0, 17, 39}, seq = {0, 0, 0};
    std::vector<float> inv(hd / 2);
    for (int i = 0; i < hd / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / hd);
    Buf dqkv = UploadRaw(qkv), dq(size_t(n) * qd * 4), dpos = UploadRaw(pos), dseq = UploadRaw(seq),
        dindptr = UploadRaw(kv.indptr), dindices = UploadRaw(kv.indices), dinv = UploadRaw(inv);
    RopeKvParams p;
    p.qkv = dqkv.p;
    p.q_out = dq.p;
    p.kv = kv.layout;
    p.layer = 1;
    p.num_tokens = n;
    p.num_heads = heads;
    p.positions = dpos.as<int32_t>();
    p.token_seq = dseq.as<int32_t>();
    p.block_indptr = dindptr.as<int32_t>();
    p.block_indices = dindices.as<int32_t>();
    p.inv_freq = dinv.as<float>();
    p.rope_dim = hd;
    p.interleaved = interleaved;
    ASSERT_CUDA(LaunchRopeKvWrite(t, p, nullptr));
    std::vector<float> q = DownloadRaw<float>(dq, size_t(n) * qd);
    std::vector<float> cache = DownloadRaw<float>(*kv.dev, kv.host.size());
    auto rotate = [&](const float* src, int position, std::vector<double>& out) {
      out.assign(src, src + hd);
      for (int i = 0; i < hd / 2; ++i) {
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + hd / 2;
        double ang = double(position) * inv[i];
        out[a] = src[a] * std::cos(ang) - src[b] * std::sin(ang);
        out[b] = src[a] * std::sin(ang) + src[b] * std::cos(ang);
      }
    };
    for (int tk = 0; tk < n; ++tk) {
      const float* row = &qkv[size_t(tk) * (qd + 2 * kvd)];
      std::vector<double> want;
      for (int h = 0; h < heads; ++h) {
        rotate(row + h * hd, pos[tk], want);
        for (int i = 0; i < hd; ++i) ASSERT_NEAR(q[tk * qd + h * hd + i], want[i], 1e-5);
      }
      int32_t block = kv.indices[pos[tk] / bs];
      const float* kslot = cache.data() + block * kv.layout.block_elems() + kv.layout.k_offset(1) + (pos[tk] % bs) * kvd;
      const float* vslot = cache.data() + block * kv.layout.block_elems() + kv.layout.v_offset(1) + (pos[tk] % bs) * kvd;
      for (int h = 0; h < kvh; ++h) {
        rotate(row + qd + h * hd, pos[tk], want);
        for (int i = 0; i < hd; ++i) ASSERT_NEAR(kslot[h * hd + i], want[i], 1e-5);
      }
      for (int i = 0; i < kvd; ++i) ASSERT_EQ(vslot[i], row[qd + kvd + i]);
    }
    // Layer 0 is untouched.
    for (int64_t b = 0; b < kv.num_blocks; ++b) {
      for (int64_t i = 0; i < kv.layout.k_offset(1); ++i) {
        ASSERT_EQ(cache[b * kv.layout.block_elems() + i], kv.host[b * kv.layout.block_elems() + i]);
      }
    }
  }
}

TEST(CudaKernels, SwiGluEmbeddingAndGemmMatchReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    const int n = 3, ff = 300;
    std::vector<float> gu = RoundTrip(t, Random(size_t(n) * 2 * ff, rng));
    Buf dgu = Upload(t, gu), dout(size_t(n) * ff * DTypeSize(t));
    ASSERT_CUDA(LaunchSwiGlu(t, dgu.p, n, ff, dout.p, nullptr));
    std::vector<float> got = Download(t, dout, size_t(n) * ff);
    std::vector<double> ref(size_t(n) * ff);
    for (int r = 0; r < n; ++r) {
      for (int i = 0; i < ff; ++i) {
        double g = gu[r * 2 * ff + i], u = gu[r * 2 * ff + ff + i];
        ref[r * ff + i] = g / (1 + std::exp(-g)) * u;
      }
    }
    EXPECT_LT(RelError(got, ref), t == DType::kF32 ? 1e-6 : 1e-2);

    const int vocab = 50, h = 64;
    std::vector<float> table = RoundTrip(t, Random(size_t(vocab) * h, rng));
    std::vector<int32_t> tokens = {3, 49, 0, 3};
    Buf dtable = Upload(t, table), dtok = UploadRaw(tokens), dres(tokens.size() * h * 4);
    ASSERT_CUDA(LaunchEmbedding(t, dtable.p, dtok.as<int32_t>(), 4, h, dres.as<float>(), nullptr));
    std::vector<float> res = DownloadRaw<float>(dres, tokens.size() * h);
    for (size_t i = 0; i < tokens.size(); ++i) {
      for (int j = 0; j < h; ++j) ASSERT_EQ(res[i * h + j], table[tokens[i] * h + j]);
    }

    std::unique_ptr<Gemm> gemm;
    ASSERT_CUDA(Gemm::Create(&gemm));
    for (auto [m, k] : std::vector<std::pair<int, int>>{{1, 128}, {7, 128}, {64, 128}, {1, 1064}, {8, 2048}, {3, 5632}}) {
      const int nn = 96;
      std::vector<float> x = RoundTrip(t, Random(size_t(m) * k, rng)), w = RoundTrip(t, Random(size_t(nn) * k, rng)),
                         bias = RoundTrip(t, Random(nn, rng));
      Buf dx = Upload(t, x), dw = Upload(t, w), db = Upload(t, bias), dy(size_t(m) * nn * 4);
      for (bool with_bias : {false, true}) {
        DType out = with_bias ? t : DType::kF32;
        ASSERT_CUDA(gemm->Run(t, out, dx.p, dw.p, with_bias ? db.p : nullptr, dy.p, m, nn, k, nullptr));
        std::vector<float> y = Download(out, dy, size_t(m) * nn);
        std::vector<double> ref(size_t(m) * nn);
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < nn; ++j) {
            double acc = with_bias ? bias[j] : 0.0;
            for (int l = 0; l < k; ++l) acc += double(x[i * k + l]) * w[j * k + l];
            ref[i * nn + j] = acc;
          }
        }
        EXPECT_LT(RelError(y, ref), t == DType::kF32 ? 1e-6 : 1e-2) << DTypeName(t) << " m=" << m;
      }
    }
  }
}

TEST(CudaSampling, ArgmaxAndTopKTopPFollowTheirDefinitions) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  const int rows = 6, vocab = 32000;
  std::vector<float> logits = Random(size_t(rows) * vocab, rng, 3.0f);
  logits[2 * vocab + 100] = logits[2 * vocab + 200] = 50.0f;  // a tie: the lower index wins
  Buf dl = UploadRaw(logits), dout(rows * 4);
  ASSERT_CUDA(LaunchArgmax(dl.as<float>(), rows, vocab, dout.as<int32_t>(), nullptr));
  std::vector<int32_t> got = DownloadRaw<int32_t>(dout, rows);
  for (int r = 0; r < rows; ++r) {
    const float* row = &logits[size_t(r) * vocab];
    EXPECT_EQ(got[r], std::max_element(row, row + vocab) - row) << r;
  }
  // Sampling: compare with a sort-based reference for the same uniform draw.
  std::vector<float> temp = {0.0f, 1.0f, 0.7f, 1.3f, 1.0f, 0.5f};
  std::vector<int32_t> top_k = {0, 1, 50, 0, 10, 0};
  std::vector<float> top_p = {1.0f, 1.0f, 0.9f, 0.5f, 0.8f, 1.0f};
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> u(rows);
    for (float& x : u) x = u01(rng);
    Buf dt = UploadRaw(temp), dk = UploadRaw(top_k), dp = UploadRaw(top_p), du = UploadRaw(u);
    SampleParams sp{dt.as<float>(), dk.as<int32_t>(), dp.as<float>(), du.as<float>()};
    ASSERT_CUDA(LaunchSample(dl.as<float>(), rows, vocab, sp, dout.as<int32_t>(), nullptr));
    std::vector<int32_t> ids = DownloadRaw<int32_t>(dout, rows);
    for (int r = 0; r < rows; ++r) {
      const float* row = &logits[size_t(r) * vocab];
      std::vector<int> order(vocab);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return row[a] > row[b]; });
      if (temp[r] <= 0 || top_k[r] == 1) {
        EXPECT_EQ(ids[r], order[0]);
        continue;
      }
      // The sampled id must be inside the kept set: rank < k, and the mass
      // of strictly more likely tokens below top_p.
      const int rank = static_cast<int>(std::find(order.begin(), order.end(), ids[r]) - order.begin());
      if (top_k[r] > 0) EXPECT_LT(rank, top_k[r] + 2) << "row " << r;  // ties at the threshold
      double z = 0, above = 0;
      const float mx = row[order[0]];
      for (int i = 0; i < vocab; ++i) z += std::exp((row[i] - mx) / temp[r]);
      for (int i = 0; i < rank; ++i) above += std::exp((row[order[i]] - mx) / temp[r]);
      if (top_p[r] < 1) EXPECT_LT(above / z, top_p[r] + 1e-3) << "row " << r;
    }
  }
}

}  // namespace
}  // namespace ferry::cuda
