#include "engine/formats/safetensors.h"

#include <cstring>

#include "engine/formats/gguf_writer.h"
#include "engine/formats/safetensors_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/formats/test_files.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

// Builds a safetensors file from a header given as JSON text and raw data.
std::vector<uint8_t> RawFile(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(8);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

absl::Status ParseRaw(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> file = RawFile(header, std::vector<uint8_t>(data_bytes));
  return SafetensorsFile::Parse(file, "raw.safetensors").status();
}

TEST(SafetensorsTest, RoundTrip) {
  testing::ScratchDir dir;
  const std::string path = dir.File("model.safetensors");
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint8_t> a_bytes = testing::FloatBytes(a);
  std::vector<uint8_t> b_bytes = *EncodeFromF32(DType::kBF16, std::vector<float>{0.5f, -1.0f, 3.0f});
  std::vector<uint8_t> c_bytes = *EncodeFromF32(DType::kF16, std::vector<float>{0.25f});
  std::vector<uint8_t> ids = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
  std::vector<SafetensorsTensorData> tensors = {
      {{"a", DType::kF32, {2, 3}}, a_bytes},
      {{"b", DType::kBF16, {3}}, b_bytes},
      {{"scalar", DType::kF16, {}}, c_bytes},
      {{"empty", DType::kF32, {0, 4}}, {}},
      {{"ids", DType::kI64, {2}}, ids},
  };
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());
  std::vector<uint8_t> raw = testing::ReadBytes(path);
  uint64_t header_len;
  std::memcpy(&header_len, raw.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);

  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), 5u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  const SafetensorsTensor* ta = (*f)->Find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->dtype, DType::kF32);
  EXPECT_EQ(ta->shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(ta->num_bytes, 24u);
  EXPECT_TRUE(ta->IsFloat());
  EXPECT_EQ(std::vector<uint8_t>(ta->data, ta->data + ta->num_bytes), a_bytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ta->data) % 8, 0u);
  const SafetensorsTensor* tb = (*f)->Find("b");
  EXPECT_EQ(DecodeToF32(tb->dtype, {tb->data, tb->num_bytes}), (std::vector<float>{0.5f, -1.0f, 3.0f}));
  const SafetensorsTensor* ts = (*f)->Find("scalar");
  EXPECT_TRUE(ts->shape.empty());
  EXPECT_EQ(ts->NumElements(), 1u);
  EXPECT_EQ((*f)->Find("empty")->num_bytes, 0u);
  const SafetensorsTensor* ti = (*f)->Find("ids");
  EXPECT_EQ(ti->dtype, DType::kI64);
  EXPECT_FALSE(ti->IsFloat());
  EXPECT_EQ((*f)->Find("missing"), nullptr);
}

TEST(SafetensorsTest, WriterRejectsBadInput) {
  testing::ScratchDir dir;
  const std::string path = dir.File("w.safetensors");
  EXPECT_FALSE(SafetensorsWriter::Create(path, {{"a", DType::kF32, {1}}, {"a", DType::kF32, {1}}}).ok());
  EXPECT_FALSE(SafetensorsWriter::Create(path, {{"__metadata__", DType::kF32, {1}}}).ok());
  EXPECT_FALSE(SafetensorsWriter::Create(path, {{"q", DType::kQ8_0, {32}}}).ok());
  auto w = SafetensorsWriter::Create(path, {{"a", DType::kF32, {2}}, {"b", DType::kF32, {1}}});
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> four(4), eight(8);
  EXPECT_EQ((*w)->WriteTensor("b", four).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*w)->WriteTensor("a", four).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*w)->WriteTensor("a", eight).ok());
  EXPECT_EQ((*w)->Finish().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SafetensorsTest, TruncatedFile) {
  std::vector<uint8_t> file = RawFile(
      R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::vector<uint8_t>(16));
  for (size_t size : {size_t{0}, size_t{7}, size_t{8}, size_t{30}, file.size() - 1}) {
    std::vector<uint8_t> cut(file.begin(), file.begin() + size);
    absl::Status s = SafetensorsFile::Parse(cut, "cut.safetensors").status();
    EXPECT_FALSE(s.ok()) << size;
    EXPECT_THAT(s.message(), HasSubstr("cut.safetensors")) << size;
  }
  std::vector<uint8_t> cut(file.begin(), file.end() - 1);
  absl::Status s = SafetensorsFile::Parse(cut, "cut.safetensors").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("tensor 'w'"));
}

TEST(SafetensorsTest, WrongMagicIsRejected) {
  // Safetensors has no magic; another format shows up as an absurd header
  // length or as bytes that are not JSON.
  std::vector<uint8_t> gguf = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  absl::Status s = SafetensorsFile::Parse(gguf, "model.gguf").status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("model.gguf"));
  std::vector<uint8_t> not_json = RawFile("GGUF....", {});
  s = SafetensorsFile::Parse(not_json, "x.bin").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("x.bin"));
}

TEST(SafetensorsTest, HeaderLengthIsBounded) {
  std::vector<uint8_t> file(16, 0);
  uint64_t huge = uint64_t{1} << 40;
  std::memcpy(file.data(), &huge, 8);
  absl::Status s = SafetensorsFile::Parse(file, "big.safetensors").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("big.safetensors"));
}

TEST(SafetensorsTest, TensorOutsideTheFile) {
  absl::Status s = ParseRaw(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})", 20);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("raw.safetensors: tensor 'w'"));
}

TEST(SafetensorsTest, ShapeDtypeMismatch) {
  absl::Status s = ParseRaw(R"({"w":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}})", 16);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("raw.safetensors: tensor 'w'"));
  EXPECT_THAT(s.message(), HasSubstr("need 8 bytes"));
}

TEST(SafetensorsTest, MalformedHeaderJson) {
  for (const char* header :
       {R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})", "[1,2,3]", "", "{\"a\":}"}) {
    absl::Status s = ParseRaw(header, 16);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << header;
    EXPECT_THAT(s.message(), HasSubstr("raw.safetensors")) << header;
  }
}

TEST(SafetensorsTest, BadEntriesNameTheTensor) {
  const char* headers[] = {
      R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})",
      R"({"w":{"dtype":7,"shape":[4],"data_offsets":[0,16]}})",
      R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})",
      R"({"w":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}})",
      R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})",
      R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}})",
      R"({"w":{"dtype":"F32","shape":[4]}})",
      R"({"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}})",
      R"({"w":[1,2]})",
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
  };
  for (const char* header : headers) {
    absl::Status s = ParseRaw(header, 16);
    EXPECT_FALSE(s.ok()) << header;
    EXPECT_THAT(s.message(), HasSubstr("raw.safetensors: tensor '")) << header;
  }
  EXPECT_FALSE(ParseRaw(R"({"__metadata__":{"a":1}})", 0).ok());
  EXPECT_FALSE(ParseRaw(R"({"__metadata__":[]})", 0).ok());
}

TEST(SafetensorsTest, ModelDirectoryWithOneFile) {
  testing::ScratchDir dir;
  std::vector<uint8_t> bytes = testing::FloatBytes({1, 2});
  std::vector<SafetensorsTensorData> t = {{{"x", DType::kF32, {2}}, bytes}};
  ASSERT_TRUE(WriteSafetensors(dir.File("model.safetensors"), t).ok());
  auto m = SafetensorsModel::Open(dir.path().string());
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_NE((*m)->Find("x"), nullptr);
  EXPECT_EQ((*m)->tensors().size(), 1u);
}

class ShardedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<uint8_t> a = testing::FloatBytes({1, 2}), b = testing::FloatBytes({3, 4, 5});
    std::vector<SafetensorsTensorData> s1 = {{{"x", DType::kF32, {2}}, a}};
    std::vector<SafetensorsTensorData> s2 = {{{"y", DType::kF32, {3}}, b},
                                             {{"z", DType::kF32, {2}}, a}};
    ASSERT_TRUE(WriteSafetensors(dir_.File("model-00001-of-00002.safetensors"), s1).ok());
    ASSERT_TRUE(WriteSafetensors(dir_.File("model-00002-of-00002.safetensors"), s2).ok());
  }
  void WriteIndex(const nlohmann::json& weight_map) {
    nlohmann::json index = {{"metadata", {{"total_size", 28}}}, {"weight_map", weight_map}};
    std::string text = index.dump();
    testing::WriteBytes(dir_.File("model.safetensors.index.json"),
                        std::vector<uint8_t>(text.begin(), text.end()));
  }
  testing::ScratchDir dir_;
};

TEST_F(ShardedModelTest, FindsTensorsAcrossShards) {
  WriteIndex({{"x", "model-00001-of-00002.safetensors"},
              {"y", "model-00002-of-00002.safetensors"},
              {"z", "model-00002-of-00002.safetensors"}});
  auto m = SafetensorsModel::Open(dir_.path().string());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->files().size(), 2u);
  ASSERT_NE((*m)->Find("y"), nullptr);
  EXPECT_EQ((*m)->Find("y")->shape, (std::vector<uint64_t>{3}));
  float y0;
  std::memcpy(&y0, (*m)->Find("y")->data, 4);
  EXPECT_EQ(y0, 3.0f);
  EXPECT_NE((*m)->Find("x"), nullptr);
  EXPECT_EQ((*m)->Find("w"), nullptr);
}

TEST_F(ShardedModelTest, MissingShardIsNamed) {
  WriteIndex({{"x", "model-00001-of-00002.safetensors"},
              {"y", "model-00003-of-00003.safetensors"}});
  auto m = SafetensorsModel::Open(dir_.path().string());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr("model-00003-of-00003.safetensors"));
  EXPECT_THAT(m.status().message(), HasSubstr("'y'"));
}

TEST_F(ShardedModelTest, TensorMissingFromItsShard) {
  WriteIndex({{"x", "model-00002-of-00002.safetensors"}});
  auto m = SafetensorsModel::Open(dir_.path().string());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("tensor 'x'"));
}

TEST_F(ShardedModelTest, MalformedIndex) {
  testing::WriteBytes(dir_.File("model.safetensors.index.json"), {'{', 'x'});
  auto m = SafetensorsModel::Open(dir_.path().string());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("model.safetensors.index.json"));
  WriteIndex({{"x", "../model-00001-of-00002.safetensors"}});
  EXPECT_FALSE(SafetensorsModel::Open(dir_.path().string()).ok());
  WriteIndex({{"x", 3}});
  EXPECT_FALSE(SafetensorsModel::Open(dir_.path().string()).ok());
}

TEST(SafetensorsModelTest, EmptyDirectory) {
  testing::ScratchDir dir;
  auto m = SafetensorsModel::Open(dir.path().string());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(m.status().message(), HasSubstr(dir.path().string()));
}

}  // namespace
}  // namespace ferry
