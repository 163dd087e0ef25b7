#include "benchmarks/loadgen/sse.h"

#include <string>
#include <vector>

#include "benchmarks/loadgen/load_runner.h"
#include "gtest/gtest.h"

namespace ferry::loadgen {
namespace {

std::vector<std::string> FeedInPieces(const std::string& stream, size_t piece) {
  SseParser p;
  std::vector<std::string> events;
  auto on = [&](std::string_view d) { events.emplace_back(d); };
  for (size_t i = 0; i < stream.size(); i += piece)
    p.Feed(std::string_view(stream).substr(i, piece), on);
  p.Finish(on);
  return events;
}

TEST(SseParserTest, SplitsEventsWhateverThePieceSize) {
  const std::string stream =
      "data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\nevent: x\ndata: line1\ndata: "
      "line2\n\ndata: [DONE]\n\n";
  for (size_t piece : {1, 2, 3, 7, 1000}) {
    std::vector<std::string> e = FeedInPieces(stream, piece);
    ASSERT_EQ(e.size(), 4u) << "piece " << piece;
    EXPECT_EQ(e[0], "{\"a\":1}");
    EXPECT_EQ(e[1], "{\"b\":2}");
    EXPECT_EQ(e[2], "line1\nline2");
    EXPECT_EQ(e[3], "[DONE]");
  }
}

TEST(SseParserTest, DeliversALastEventWithoutTheBlankLine) {
  std::vector<std::string> e = FeedInPieces("data:x\n\ndata:y", 4);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "x");
  EXPECT_EQ(e[1], "y");
}

TEST(ParseChunkTest, ReadsTextDeltasUsageDoneAndErrors) {
  EXPECT_TRUE(ParseChunk("[DONE]").done);
  EXPECT_TRUE(ParseChunk(R"({"choices":[{"index":0,"text":"hi"}]})").has_output);
  EXPECT_FALSE(ParseChunk(R"({"choices":[{"index":0,"text":""}]})").has_output);
  EXPECT_TRUE(ParseChunk(R"({"choices":[{"delta":{"content":"x"}}]})").has_output);
  EXPECT_FALSE(ParseChunk(R"({"choices":[{"delta":{"role":"assistant"}}]})").has_output);
  StreamChunk u =
      ParseChunk(R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":20}})");
  EXPECT_FALSE(u.has_output);
  EXPECT_EQ(u.completion_tokens, 20);
  EXPECT_EQ(u.prompt_tokens, 5);
  EXPECT_EQ(ParseChunk(R"({"error":{"message":"boom","type":"x"}})").error, "boom");
  EXPECT_EQ(ParseChunk("not json").error, "malformed chunk");
}

TEST(ParseChunkTest, KeepsTheDeltaTextAndTheResponseId) {
  StreamChunk c = ParseChunk(R"({"id":"cmpl-9","choices":[{"index":0,"text":" upon"}]})");
  EXPECT_EQ(c.text, " upon");
  EXPECT_EQ(c.id, "cmpl-9");
  c = ParseChunk(R"({"id":"chatcmpl-1","choices":[{"delta":{"content":"x"}}]})");
  EXPECT_EQ(c.text, "x");
  EXPECT_EQ(ParseChunk(R"({"choices":[{"delta":{"role":"assistant"}}]})").text, "");
}

TEST(RequestBodyTest, StreamsWithUsageForBothEndpoints) {
  TargetOptions t;
  t.model = "m";
  BenchRequest r;
  r.prompt = "hello";
  r.output_tokens = 7;
  nlohmann::json c = RequestBody(t, r);
  EXPECT_EQ(c["prompt"], "hello");
  EXPECT_EQ(c["max_tokens"], 7);
  EXPECT_EQ(c["stream"], true);
  EXPECT_EQ(c["stream_options"]["include_usage"], true);
  EXPECT_EQ(c["model"], "m");
  EXPECT_FALSE(c.contains("temperature"));  // the server's default unless asked
  t.temperature = 0.0;
  EXPECT_EQ(RequestBody(t, r)["temperature"], 0.0);
  t.temperature.reset();
  t.endpoint = "chat";
  t.model.clear();
  nlohmann::json chat = RequestBody(t, r);
  EXPECT_EQ(chat["messages"][0]["content"], "hello");
  EXPECT_FALSE(chat.contains("model"));
}

TEST(EndpointPathTest, AcceptsBaseUrlsWithOrWithoutV1) {
  TargetOptions t;
  std::string base;
  t.url = "http://127.0.0.1:8000";
  EXPECT_EQ(*EndpointPath(t, &base), "/v1/completions");
  EXPECT_EQ(base, "http://127.0.0.1:8000");
  t.url = "http://h:1/v1/";
  t.endpoint = "chat";
  EXPECT_EQ(*EndpointPath(t, &base), "/v1/chat/completions");
  EXPECT_EQ(base, "http://h:1");
  t.url = "127.0.0.1:8000";
  EXPECT_FALSE(EndpointPath(t, &base).ok());
  t.url = "http://h:1";
  t.endpoint = "embeddings";
  EXPECT_FALSE(EndpointPath(t, &base).ok());
}

}  // namespace
}  // namespace ferry::loadgen
