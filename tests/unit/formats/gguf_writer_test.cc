#include "engine/formats/gguf_writer.h"

#include <cmath>
#include <cstring>

#include "engine/formats/gguf.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/formats/test_files.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

std::vector<float> Ramp(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * std::sin(0.37f * static_cast<float>(i) + 0.1f);
  return v;
}

TEST(GgufWriterTest, RoundTripsMetadataAndTensors) {
  testing::ScratchDir dir;
  const std::string path = dir.File("rt.gguf");
  GgufWriter w(path);
  w.SetU8("t.u8", 200);
  w.SetI8("t.i8", -100);
  w.SetU16("t.u16", 60000);
  w.SetI16("t.i16", -30000);
  w.SetU32("t.u32", 4000000000u);
  w.SetI32("t.i32", -2000000000);
  w.SetU64("t.u64", uint64_t{1} << 40);
  w.SetI64("t.i64", -(int64_t{1} << 40));
  w.SetF32("t.f32", 0.5f);
  w.SetF64("t.f64", 1e-300);
  w.SetBool("t.bool", true);
  w.SetString("t.str", "hello \xc4\xa0world");
  w.SetString("t.replaced", "old");
  w.SetString("t.replaced", "new");
  std::vector<std::string> strs = {"a", "", "\xc4\xa0the"};
  w.SetStringArray("t.strs", strs);
  std::vector<int32_t> i32s = {1, -2, 3};
  w.SetI32Array("t.i32s", i32s);
  std::vector<int64_t> i64s = {int64_t{1} << 50, -7};
  w.SetI64Array("t.i64s", i64s);
  std::vector<float> f32s = {1.5f, -2.25f};
  w.SetF32Array("t.f32s", f32s);
  std::vector<double> f64s = {0.125};
  w.SetF64Array("t.f64s", f64s);
  std::vector<uint8_t> u8s = {9, 8};
  w.SetU8Array("t.u8s", u8s);
  std::vector<uint32_t> u32s = {7};
  w.SetU32Array("t.u32s", u32s);
  bool bools[2] = {true, false};
  w.SetBoolArray("t.bools", bools);

  std::vector<float> a = Ramp(3 * 5, 1.0f);     // F32 [3, 5]
  std::vector<float> b = Ramp(7, 2.0f);         // F16 [7]
  std::vector<float> c = Ramp(2 * 3 * 4, 3.0f); // BF16 [2, 3, 4]
  std::vector<float> q = Ramp(4 * 64, 0.05f);   // Q8_0 [4, 64]
  ASSERT_TRUE(w.AddTensor("a", DType::kF32, {3, 5}).ok());
  ASSERT_TRUE(w.AddTensor("b", DType::kF16, {7}).ok());
  ASSERT_TRUE(w.AddTensor("c", DType::kBF16, {2, 3, 4}).ok());
  ASSERT_TRUE(w.AddTensor("q", DType::kQ8_0, {4, 64}).ok());
  ASSERT_TRUE(w.Begin().ok());
  for (auto [name, dtype, values] : {std::tuple{"a", DType::kF32, &a}, std::tuple{"b", DType::kF16, &b},
                                     std::tuple{"c", DType::kBF16, &c},
                                     std::tuple{"q", DType::kQ8_0, &q}}) {
    auto bytes = EncodeFromF32(dtype, *values);
    ASSERT_TRUE(bytes.ok());
    ASSERT_TRUE(w.WriteTensor(name, *bytes).ok()) << name;
  }
  ASSERT_TRUE(w.Finish().ok());
  EXPECT_EQ(testing::ReadBytes(path).size(), w.file_size());

  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(*g.GetInt("general.alignment"), 32);
  EXPECT_EQ(*g.GetInt("t.u8"), 200);
  EXPECT_EQ(*g.GetInt("t.i8"), -100);
  EXPECT_EQ(*g.GetInt("t.u16"), 60000);
  EXPECT_EQ(*g.GetInt("t.i16"), -30000);
  EXPECT_EQ(*g.GetInt("t.u32"), 4000000000);
  EXPECT_EQ(*g.GetInt("t.i32"), -2000000000);
  EXPECT_EQ(*g.GetInt("t.u64"), int64_t{1} << 40);
  EXPECT_EQ(*g.GetInt("t.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(*g.GetFloat("t.f32"), 0.5);
  EXPECT_EQ(*g.GetFloat("t.f64"), 1e-300);
  EXPECT_EQ(*g.GetBool("t.bool"), true);
  EXPECT_EQ(*g.GetString("t.str"), "hello \xc4\xa0world");
  EXPECT_EQ(*g.GetString("t.replaced"), "new");
  auto got_strs = g.GetStringArray("t.strs");
  ASSERT_TRUE(got_strs.ok());
  EXPECT_EQ(std::vector<std::string>(got_strs->begin(), got_strs->end()), strs);
  EXPECT_EQ(*g.GetIntArray("t.i32s"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*g.GetIntArray("t.i64s"), (std::vector<int64_t>{int64_t{1} << 50, -7}));
  EXPECT_EQ(*g.GetIntArray("t.u8s"), (std::vector<int64_t>{9, 8}));
  EXPECT_EQ(*g.GetIntArray("t.u32s"), (std::vector<int64_t>{7}));
  EXPECT_EQ(*g.GetIntArray("t.bools"), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(*g.GetFloatArray("t.f32s"), (std::vector<float>{1.5f, -2.25f}));
  EXPECT_EQ(*g.GetFloatArray("t.f64s"), (std::vector<float>{0.125f}));

  ASSERT_EQ(g.tensors().size(), 4u);
  const GgufTensorInfo* ta = g.FindTensor("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->ne, (std::vector<uint64_t>{5, 3}));  // innermost first
  EXPECT_EQ(ta->Shape(), (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(DecodeToF32(DType::kF32, {ta->data, ta->num_bytes}), a);
  for (const GgufTensorInfo& t : g.tensors()) {
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u) << t.name;  // mmap is page aligned
  }
  const GgufTensorInfo* tb = g.FindTensor("b");
  EXPECT_EQ(tb->dtype, DType::kF16);
  std::vector<float> got_b = DecodeToF32(DType::kF16, {tb->data, tb->num_bytes});
  for (size_t i = 0; i < b.size(); ++i) EXPECT_NEAR(got_b[i], b[i], 2e-3) << i;
  const GgufTensorInfo* tc = g.FindTensor("c");
  EXPECT_EQ(tc->dtype, DType::kBF16);
  EXPECT_EQ(tc->Shape(), (std::vector<uint64_t>{2, 3, 4}));
  std::vector<float> got_c = DecodeToF32(DType::kBF16, {tc->data, tc->num_bytes});
  for (size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(got_c[i], c[i], 3.0 / 128) << i;
  const GgufTensorInfo* tq = g.FindTensor("q");
  EXPECT_EQ(tq->dtype, DType::kQ8_0);
  EXPECT_EQ(tq->num_bytes, 4u * 2 * 34);
  std::vector<float> got_q = DecodeToF32(DType::kQ8_0, {tq->data, tq->num_bytes});
  for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(got_q[i], q[i], 0.05 * 0.005) << i;
}

TEST(GgufWriterTest, Q8_0MatchesTheReferenceRule) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i - 16) / 8.0f;  // max |x| = 2
  auto bytes = EncodeFromF32(DType::kQ8_0, x);
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ(bytes->size(), 34u);
  uint16_t dh;
  std::memcpy(&dh, bytes->data(), 2);
  EXPECT_FLOAT_EQ(Fp16ToFloat(dh), Fp16ToFloat(FloatToFp16(2.0f / 127)));
  EXPECT_EQ(static_cast<int8_t>((*bytes)[2]), -127);                   // -2 / d
  EXPECT_EQ(static_cast<int8_t>((*bytes)[2 + 16]), 0);
  EXPECT_EQ(static_cast<int8_t>((*bytes)[2 + 17]), std::lround(0.125f * 127 / 2));
  std::vector<float> zeros(32, 0.0f);
  auto zb = EncodeFromF32(DType::kQ8_0, zeros);
  EXPECT_EQ(DecodeToF32(DType::kQ8_0, *zb), zeros);
  EXPECT_FALSE(EncodeFromF32(DType::kQ8_0, std::vector<float>(31)).ok());
}

TEST(GgufWriterTest, RejectsBadTensorsAndOrder) {
  testing::ScratchDir dir;
  GgufWriter w(dir.File("bad.gguf"));
  EXPECT_TRUE(w.AddTensor("x", DType::kF32, {2}).ok());
  EXPECT_FALSE(w.AddTensor("x", DType::kF32, {2}).ok());
  EXPECT_FALSE(w.AddTensor("q", DType::kQ8_0, {2, 48}).ok());
  EXPECT_FALSE(w.AddTensor("i", DType::kI32, {2}).ok());
  EXPECT_FALSE(w.AddTensor("z", DType::kF32, {0}).ok());
  EXPECT_FALSE(w.AddTensor("d", DType::kF32, {}).ok());
  EXPECT_TRUE(w.AddTensor("y", DType::kF32, {1}).ok());
  ASSERT_TRUE(w.Begin().ok());
  std::vector<uint8_t> eight(8), four(4);
  absl::Status s = w.WriteTensor("y", four);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("expected 'x'"));
  EXPECT_EQ(w.WriteTensor("x", four).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(w.WriteTensor("x", eight).ok());
  EXPECT_EQ(w.Finish().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(w.WriteTensor("y", four).ok());
  EXPECT_TRUE(w.Finish().ok());
  EXPECT_TRUE(GgufFile::Open(dir.File("bad.gguf")).ok());
}

TEST(GgufWriterTest, UnfinishedWriterLeavesNoFile) {
  testing::ScratchDir dir;
  {
    GgufWriter w(dir.File("partial.gguf"));
    ASSERT_TRUE(w.AddTensor("x", DType::kF32, {2}).ok());
    ASSERT_TRUE(w.Begin().ok());
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("partial.gguf")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("partial.gguf.tmp")));
}

}  // namespace
}  // namespace ferry
