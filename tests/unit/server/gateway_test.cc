// The gateway's endpoints against a fake backend, without HTTP: routing,
// validation, response shapes, streaming, errors, auth, limits, metrics.
#include "server/gateway.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "gtest/gtest.h"
#include "server/anthropic_api.h"
#include "server/model_assets.h"
#include "spdlog/sinks/ostream_sink.h"
#include "tests/test_support.h"
#include "tests/unit/server/fake_backend.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;
using testing::FakeBackend;

constexpr char kChatMl[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}";

class StringWriter : public ChunkWriter {
 public:
  explicit StringWriter(int fail_after = -1) : fail_after_(fail_after) {}
  bool Write(std::string_view data) override {
    if (fail_after_ >= 0 && writes_ >= fail_after_) return false;
    ++writes_;
    out.append(data);
    return true;
  }
  std::string out;

 private:
  int fail_after_;
  int writes_ = 0;
};

// A streamed chat message merged as the openai SDKs merge deltas: content
// appended, tool calls by index (id, type and name as first given,
// arguments appended).
struct StreamedMessage {
  std::string content;
  Json calls = Json::array();
  std::string finish;
  int calls_before_finish = 0;            // chunks with tool calls before the final one
  int argument_pieces_before_finish = 0;  // of call 0, non-empty, before the final chunk

  void Add(const std::string& event) {
    if (event == "[DONE]") return;
    const Json chunk = Json::parse(event);
    if (chunk["choices"].empty()) return;
    const Json& choice = chunk["choices"][0];
    const Json& delta = choice["delta"];
    const bool final = choice["finish_reason"].is_string();
    if (final) finish = choice["finish_reason"];
    if (delta.contains("content") && delta["content"].is_string())
      content += delta["content"].get<std::string>();
    if (!delta.contains("tool_calls")) return;
    if (!final) ++calls_before_finish;
    for (const Json& d : delta["tool_calls"]) {
      const size_t i = d["index"].get<size_t>();
      while (calls.size() <= i) calls.push_back(Json{{"function", {{"arguments", ""}}}});
      Json& call = calls[i];
      for (const char* key : {"id", "type"}) {
        if (d.contains(key)) {
          EXPECT_FALSE(call.contains(key)) << "a second " << key << ": " << event;
          call[key] = d[key];
        }
      }
      if (!d.contains("function")) continue;
      const Json& f = d["function"];
      if (f.contains("name")) call["function"]["name"] = f["name"];
      if (f.contains("arguments")) {
        const std::string piece = f["arguments"].get<std::string>();
        call["function"]["arguments"] = call["function"]["arguments"].get<std::string>() + piece;
        if (i == 0 && !final && !piece.empty()) ++argument_pieces_before_finish;
      }
    }
  }
};

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string model = ferry::testing::SharedPath("models/stories260K.gguf");
    if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " is absent";
    std::string tmpl = ferry::testing::UniqueTempPath("chatml.jinja");
    std::ofstream(tmpl) << kChatMl;
    auto assets = ModelAssets::Load(model, tmpl);
    ASSERT_TRUE(assets.ok()) << assets.status();
    assets_ = std::move(*assets);
    auto plain = ModelAssets::Load(model);
    ASSERT_TRUE(plain.ok());
    plain_assets_ = std::move(*plain);
    Make(GatewayOptions{});
  }

  void Make(GatewayOptions options, const ModelAssets* assets = nullptr) {
    gateway_.reset();
    metrics_ = std::make_unique<MetricsRegistry>();
    gateway_ = std::make_unique<Gateway>(options, assets ? assets : assets_.get(), &backend_, metrics_.get());
  }

  HttpResponse Call(const std::string& method, const std::string& path, const std::string& body = "",
                    const std::string& auth = "") {
    HttpRequest r{method, path, body, {}, "127.0.0.1"};
    if (!auth.empty()) r.headers.emplace_back("Authorization", auth);
    return gateway_->Handle(r);
  }

  Json Post(const std::string& path, const Json& body, int want_status = 200) {
    HttpResponse r = Call("POST", path, body.dump());
    EXPECT_EQ(r.status, want_status) << r.body;
    EXPECT_FALSE(r.stream) << "unexpected stream";
    return Json::parse(r.body);
  }

  // Runs a streamed response; returns the data payloads.
  std::vector<std::string> Stream(HttpResponse r) {
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(r.stream);
    StringWriter w;
    if (r.stream) r.stream(w);
    std::vector<std::string> events;
    size_t pos = 0;
    while ((pos = w.out.find("data: ", pos)) != std::string::npos) {
      size_t end = w.out.find("\n\n", pos);
      events.push_back(w.out.substr(pos + 6, end - pos - 6));
      pos = end;
    }
    return events;
  }

  std::unique_ptr<ModelAssets> assets_, plain_assets_;
  FakeBackend backend_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<Gateway> gateway_;
};

TEST_F(GatewayTest, HealthModelsAndRouting) {
  EXPECT_EQ(Call("GET", "/health").status, 200);
  EXPECT_EQ(Call("GET", "/ready").status, 200);
  Json models = Json::parse(Call("GET", "/v1/models").body);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "stories260K.gguf");
  EXPECT_EQ(Call("GET", "/v1/models/stories260K.gguf").status, 200);
  HttpResponse missing = Call("GET", "/v1/models/gpt-4");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(Json::parse(missing.body)["error"]["code"], "model_not_found");
  EXPECT_EQ(Call("GET", "/nope").status, 404);
  HttpResponse wrong = Call("GET", "/v1/completions");
  EXPECT_EQ(wrong.status, 405);
  ASSERT_FALSE(wrong.headers.empty());
  EXPECT_EQ(wrong.headers[0].first, "Allow");
  backend_.ready_ = false;
  EXPECT_EQ(Call("GET", "/ready").status, 503);
}

TEST_F(GatewayTest, CompletionResponseShape) {
  Json r = Post("/v1/completions", {{"prompt", "Once upon"}, {"max_tokens", 3}, {"temperature", 0}});
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(r["model"], "stories260K.gguf");
  ASSERT_EQ(r["choices"].size(), 1u);
  EXPECT_EQ(r["choices"][0]["text"], "t0 t1 t2 ");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"]["completion_tokens"], 3);
  EXPECT_EQ(r["usage"]["total_tokens"], r["usage"]["prompt_tokens"].get<int>() + 3);
  auto sent = backend_.requests();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_GT(sent[0].prompt_ids_size(), 1);
  EXPECT_EQ(sent[0].prompt_ids(0), 1);  // BOS
  EXPECT_EQ(sent[0].params().temperature(), 0);
  EXPECT_EQ(sent[0].params().max_tokens(), 3);
}

// vLLM's truncate_prompt_tokens keeps the prompt's last tokens (the echo
// shows what was kept).
TEST_F(GatewayTest, TruncatePromptTokensKeepsTheLastTokens) {
  Json r = Post("/v1/completions", {{"prompt", Json::array({1, 300, 301, 302, 303, 304})},
                                    {"max_tokens", 2},
                                    {"truncate_prompt_tokens", 3},
                                    {"echo", true}});
  auto sent = backend_.requests();
  ASSERT_EQ(sent.size(), 1u);
  ASSERT_EQ(sent[0].prompt_ids_size(), 3);
  EXPECT_EQ(sent[0].prompt_ids(0), 302);
  EXPECT_EQ(sent[0].prompt_ids(2), 304);
  EXPECT_EQ(r["usage"]["prompt_tokens"], 3);
  const std::string kept = assets_->tokenizer().Decode(std::vector<int32_t>{302, 303, 304}, true);
  EXPECT_EQ(r["choices"][0]["text"].get<std::string>().substr(0, kept.size()), kept);
  // A prompt already short enough is left alone; -1 is the context length.
  Post("/v1/completions",
       {{"prompt", "Once upon"}, {"max_tokens", 2}, {"truncate_prompt_tokens", 50}});
  Post("/v1/chat/completions",
       {{"messages",
         Json::array({Json{{"role", "user"}, {"content", "a fairly long question here"}}})},
        {"max_tokens", 2},
        {"truncate_prompt_tokens", 4}});
  sent = backend_.requests();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_GT(sent[1].prompt_ids_size(), 2);
  EXPECT_EQ(sent[2].prompt_ids_size(), 4);
  // bad_words reach the engine as token sequences, each word as given and
  // (where that tokenizes differently) after a space.
  Post("/v1/completions",
       {{"prompt", "Once"}, {"max_tokens", 2}, {"bad_words", {"girl", "little dog"}}});
  sent = backend_.requests();
  const v1::SamplingParams& p = sent.back().params();
  ASSERT_GE(p.bad_words_size(), 2);
  const Tokenizer& tok = assets_->tokenizer();
  EXPECT_EQ(std::vector<int32_t>(p.bad_words(0).ids().begin(), p.bad_words(0).ids().end()),
            tok.Encode("girl", false, false));
  bool little_dog = false;
  for (const auto& w : p.bad_words()) {
    little_dog |= std::vector<int32_t>(w.ids().begin(), w.ids().end()) ==
                  tok.Encode("little dog", false, false);
  }
  EXPECT_TRUE(little_dog);
  Json bad = Post("/v1/completions", {{"prompt", "x"}, {"truncate_prompt_tokens", 0}}, 400);
  EXPECT_EQ(bad["error"]["param"], "truncate_prompt_tokens");
}

TEST_F(GatewayTest, SeveralPromptsAndSamplesGiveIndexedChoices) {
  Json r = Post("/v1/completions", {{"prompt", Json::array({"a", "b"})}, {"n", 2}, {"max_tokens", 2}});
  ASSERT_EQ(r["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r["choices"][i]["index"], i);
  EXPECT_EQ(r["usage"]["completion_tokens"], 8);
}

// Echoed prompt tokens carry the logprobs the backend sends with the first
// event (the first token has none), asked for with prompt_logprobs; then
// the completion's own.
TEST_F(GatewayTest, EchoAndLogprobs) {
  Json r = Post("/v1/completions",
                {{"prompt", "Once upon a time"}, {"max_tokens", 2}, {"echo", true}, {"logprobs", 2}});
  const Json& c = r["choices"][0];
  EXPECT_EQ(c["text"].get<std::string>().rfind("Once upon a time", 0), 0u);
  const Json& lp = c["logprobs"];
  const size_t prompt = backend_.requests().back().prompt_ids_size();
  ASSERT_GT(prompt, 2u);
  EXPECT_EQ(backend_.requests().back().params().prompt_logprobs(), 2);
  ASSERT_EQ(lp["tokens"].size(), prompt + 2);
  EXPECT_EQ(lp["token_logprobs"].size(), prompt + 2);
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  for (size_t j = 1; j < prompt; ++j) {
    EXPECT_NEAR(lp["token_logprobs"][j].get<double>(), -0.1 * static_cast<double>(j), 1e-6) << j;
    // The token itself and the two best, which may include it.
    EXPECT_EQ(lp["top_logprobs"][j].size(), j % 2 == 0 ? 2u : 3u) << lp["top_logprobs"][j];
  }
  EXPECT_EQ(lp["token_logprobs"].back(), -0.5);
  EXPECT_GE(lp["top_logprobs"].back().size(), 1u);
  // Offsets run on through the prompt's tokens into the completion's.
  for (size_t j = 1; j < lp["text_offset"].size(); ++j) {
    EXPECT_GT(lp["text_offset"][j].get<int64_t>(), lp["text_offset"][j - 1].get<int64_t>());
  }

  // Streamed: the first chunk, the echo, waits for the first event and
  // carries the same prompt logprobs.
  auto events = Stream(Call("POST", "/v1/completions",
                            R"({"prompt":"Once upon a time","max_tokens":2,"echo":true,"logprobs":0,"stream":true})"));
  ASSERT_GE(events.size(), 2u);
  Json first = Json::parse(events[0]);
  EXPECT_EQ(first["choices"][0]["text"], "Once upon a time");
  const Json& flp = first["choices"][0]["logprobs"];
  ASSERT_EQ(flp["token_logprobs"].size(), prompt);
  EXPECT_TRUE(flp["token_logprobs"][0].is_null());
  EXPECT_NEAR(flp["token_logprobs"][prompt - 1].get<double>(), -0.1 * static_cast<double>(prompt - 1), 1e-6);

  // Without logprobs, nothing is asked of the backend.
  Post("/v1/completions", {{"prompt", "Hello"}, {"max_tokens", 2}, {"echo", true}});
  EXPECT_FALSE(backend_.requests().back().params().has_prompt_logprobs());
}

// vLLM's prompt_logprobs: for each prompt token after the first, a map
// from token id to {logprob, rank, decoded_token} with the prompt's own
// token first and then the k best; per choice for completions, beside the
// choices for chat; not available when streaming.
TEST_F(GatewayTest, PromptLogprobsComeAsVllmShapesThem) {
  const Tokenizer& tok = assets_->tokenizer();
  auto check = [&](const Json& pl, const v1::GenerateRequest& req, int k) {
    const int prompt = req.prompt_ids_size();
    ASSERT_EQ(pl.size(), static_cast<size_t>(prompt)) << pl;
    EXPECT_TRUE(pl[0].is_null());
    for (int j = 1; j < prompt; ++j) {
      const int32_t own = req.prompt_ids(j);
      std::vector<std::string> keys = {std::to_string(own)};
      for (int a = 0; a < k; ++a) {
        std::string key = std::to_string(FakeBackend::PromptAlternative(req, j, a));
        if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
      }
      ASSERT_EQ(pl[j].size(), keys.size()) << pl[j];
      size_t at = 0;
      for (const auto& [key, entry] : pl[j].items()) {
        ASSERT_EQ(key, keys[at]) << j;
        const int32_t id = std::stoi(key);
        EXPECT_EQ(entry["decoded_token"],
                  tok.Decode(std::vector<int32_t>{id}, /*skip_special=*/false));
        if (at == 0) {
          EXPECT_NEAR(entry["logprob"].get<double>(), -0.1 * j, 1e-6);
          EXPECT_EQ(entry["rank"], j);
        } else {
          EXPECT_EQ(entry["rank"].get<int>(),
                    j % 2 == 0 ? static_cast<int>(at) + 1 : static_cast<int>(at));
        }
        ++at;
      }
    }
  };

  Json r =
      Post("/v1/completions",
           {{"prompt", "Once upon a time"}, {"max_tokens", 2}, {"n", 2}, {"prompt_logprobs", 3}});
  v1::GenerateRequest req = backend_.requests().back();
  EXPECT_EQ(req.params().prompt_logprobs(), 3);
  ASSERT_EQ(r["choices"].size(), 2u);
  for (const Json& c : r["choices"]) {
    EXPECT_TRUE(c["logprobs"].is_null());
    check(c["prompt_logprobs"], req, 3);
  }
  // Without it the key is absent.
  r = Post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 2}});
  EXPECT_FALSE(r["choices"][0].contains("prompt_logprobs"));
  EXPECT_FALSE(backend_.requests().back().params().has_prompt_logprobs());

  // With echo and logprobs the backend is asked for the larger count; each
  // shape keeps its own.
  r = Post("/v1/completions", {{"prompt", "Once upon a time"},
                               {"max_tokens", 2},
                               {"echo", true},
                               {"logprobs", 1},
                               {"prompt_logprobs", 4}});
  req = backend_.requests().back();
  EXPECT_EQ(req.params().prompt_logprobs(), 4);
  check(r["choices"][0]["prompt_logprobs"], req, 4);
  const Json& top = r["choices"][0]["logprobs"]["top_logprobs"];
  for (int j = 1; j < req.prompt_ids_size(); ++j) EXPECT_LE(top[j].size(), 2u) << top[j];
  r = Post("/v1/completions", {{"prompt", "Once upon a time"},
                               {"max_tokens", 2},
                               {"echo", true},
                               {"logprobs", 3},
                               {"prompt_logprobs", 0}});
  req = backend_.requests().back();
  EXPECT_EQ(req.params().prompt_logprobs(), 3);
  check(r["choices"][0]["prompt_logprobs"], req, 0);

  // Chat: one list beside the choices.
  r = Post("/v1/chat/completions",
           {{"messages", Json::array({{{"role", "user"}, {"content", "Hi there"}}})},
            {"max_tokens", 2},
            {"prompt_logprobs", 1}});
  req = backend_.requests().back();
  check(r["prompt_logprobs"], req, 1);
  EXPECT_FALSE(r["choices"][0].contains("prompt_logprobs"));

  // Bad values and streaming are 400s naming the parameter.
  for (const Json& body : {Json{{"prompt", "a"}, {"prompt_logprobs", -1}},
                           Json{{"prompt", "a"}, {"prompt_logprobs", 21}},
                           Json{{"prompt", "a"}, {"prompt_logprobs", "2"}},
                           Json{{"prompt", "a"}, {"prompt_logprobs", 1.5}},
                           Json{{"prompt", "a"}, {"prompt_logprobs", 0}, {"stream", true}}}) {
    Json e = Post("/v1/completions", body, 400);
    EXPECT_EQ(e["error"]["param"], "prompt_logprobs") << body;
  }
}

// A Responses stream: each event's "event:" line and its data, in order.
std::vector<std::pair<std::string, Json>> ResponseEvents(const std::string& raw) {
  std::vector<std::pair<std::string, Json>> events;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t end = raw.find("\n\n", pos);
    if (end == std::string::npos) end = raw.size();
    const std::string block = raw.substr(pos, end - pos);
    pos = end + 2;
    if (block.rfind("event: ", 0) != 0) continue;
    const size_t nl = block.find('\n');
    const std::string name = block.substr(7, nl - 7);
    EXPECT_EQ(block.compare(nl + 1, 6, "data: "), 0) << block;
    events.emplace_back(name, Json::parse(block.substr(nl + 7)));
  }
  return events;
}

// What a Responses stream adds up to, checked as the openai SDKs check it
// while they accumulate: every delta refers to an item and part announced
// before it, and the numbering runs without gaps.
struct AccumulatedResponse {
  Json response;  // from response.completed / response.incomplete
  Json output = Json::array();
  std::vector<std::string> types;
};

AccumulatedResponse Accumulate(const std::vector<std::pair<std::string, Json>>& events) {
  AccumulatedResponse a;
  int64_t seq = 0;
  for (const auto& [name, e] : events) {
    EXPECT_EQ(name, e["type"]);
    EXPECT_EQ(e["sequence_number"], seq++);
    a.types.push_back(name);
    if (name == "response.output_item.added") {
      EXPECT_EQ(e["output_index"], a.output.size());
      a.output.push_back(e["item"]);
    } else if (name == "response.content_part.added") {
      a.output.at(e["output_index"].get<size_t>())["content"].push_back(e["part"]);
    } else if (name == "response.output_text.delta") {
      Json& part = a.output.at(e["output_index"].get<size_t>())["content"].at(
          e["content_index"].get<size_t>());
      part["text"] = part["text"].get<std::string>() + e["delta"].get<std::string>();
    } else if (name == "response.function_call_arguments.delta") {
      Json& item = a.output.at(e["output_index"].get<size_t>());
      EXPECT_EQ(item["type"], "function_call");
      item["arguments"] = item["arguments"].get<std::string>() + e["delta"].get<std::string>();
    } else if (name == "response.output_item.done") {
      Json& item = a.output.at(e["output_index"].get<size_t>());
      if (item["type"] == "message") EXPECT_EQ(e["item"]["content"], item["content"]);
      if (item["type"] == "function_call") EXPECT_EQ(e["item"]["arguments"], item["arguments"]);
    } else if (name == "response.completed" || name == "response.incomplete") {
      a.response = e["response"];
    }
  }
  if (a.types.size() >= 2) {
    EXPECT_EQ(a.types[0], "response.created");
    EXPECT_EQ(a.types[1], "response.in_progress");
  }
  return a;
}

// POST /v1/responses runs as a chat completion and answers as a Response,
// whole or as the typed event stream.
TEST_F(GatewayTest, ResponsesAnswerAsResponseObjectsAndEvents) {
  Json r = Post("/v1/responses",
                {{"input", "Hello"}, {"instructions", "Be kind."}, {"max_output_tokens", 9}});
  v1::GenerateRequest req = backend_.requests().back();
  const std::vector<int32_t> ids(req.prompt_ids().begin(), req.prompt_ids().end());
  EXPECT_NE(assets_->tokenizer()
                .Decode(ids, /*skip_special=*/false)
                .find("<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHello<|im_end|>"),
            std::string::npos);
  EXPECT_EQ(req.params().max_tokens(), 9);
  EXPECT_EQ(r["object"], "response");
  EXPECT_EQ(r["id"].get<std::string>().rfind("resp_", 0), 0u);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_TRUE(r["incomplete_details"].is_null());
  EXPECT_EQ(r["instructions"], "Be kind.");
  EXPECT_EQ(r["max_output_tokens"], 9);
  ASSERT_EQ(r["output"].size(), 1u);
  const Json& msg = r["output"][0];
  EXPECT_EQ(msg["type"], "message");
  EXPECT_EQ(msg["role"], "assistant");
  EXPECT_EQ(msg["status"], "completed");
  EXPECT_EQ(msg["content"][0]["type"], "output_text");
  EXPECT_EQ(msg["content"][0]["text"], "t0 t1 t2 t3 ");
  EXPECT_EQ(r["usage"]["input_tokens"], req.prompt_ids_size());
  EXPECT_EQ(r["usage"]["output_tokens"], 4);
  EXPECT_EQ(r["usage"]["total_tokens"], req.prompt_ids_size() + 4);

  // Cut by max_output_tokens: incomplete, and says why.
  r = Post("/v1/responses", {{"input", "Hello"}, {"max_output_tokens", 2}});
  EXPECT_EQ(r["status"], "incomplete");
  EXPECT_EQ(r["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(r["output"][0]["content"][0]["text"], "t0 t1 ");

  // Streamed.
  HttpResponse h =
      Call("POST", "/v1/responses", R"({"input":"Hello","stream":true,"max_output_tokens":9})");
  ASSERT_TRUE(h.stream);
  EXPECT_EQ(h.content_type, "text/event-stream");
  StringWriter w;
  h.stream(w);
  AccumulatedResponse a = Accumulate(ResponseEvents(w.out));
  EXPECT_EQ(a.types.back(), "response.completed");
  ASSERT_EQ(a.output.size(), 1u);
  EXPECT_EQ(a.output[0]["content"][0]["text"], "t0 t1 t2 t3 ");
  EXPECT_EQ(a.response["output"],
            a.output.size() == 1 ? Json::array({a.response["output"][0]}) : Json());
  EXPECT_EQ(a.response["output"][0]["content"][0]["text"], "t0 t1 t2 t3 ");
  EXPECT_EQ(a.response["status"], "completed");
  EXPECT_EQ(a.response["usage"]["output_tokens"], 4);
  EXPECT_EQ(std::count(a.types.begin(), a.types.end(), "response.output_text.delta"), 4);
  EXPECT_EQ(w.out.find("[DONE]"), std::string::npos);

  // Logprobs when asked for.
  r = Post("/v1/responses", {{"input", "Hello"}, {"top_logprobs", 2}});
  const Json& lp = r["output"][0]["content"][0]["logprobs"];
  ASSERT_EQ(lp.size(), 4u);
  EXPECT_EQ(lp[0]["top_logprobs"].size(), 2u);

  // Errors name the Responses parameter; other methods are 405.
  Json e = Post("/v1/responses", {{"input", "x"}, {"temperature", -1}}, 400);
  EXPECT_EQ(e["error"]["param"], "temperature");
  e = Post("/v1/responses", {{"input", "x"}, {"max_output_tokens", 1 << 20}}, 400);
  EXPECT_EQ(e["error"]["param"], "max_output_tokens") << e;
  e = Post("/v1/responses", {{"input", "x"}, {"previous_response_id", "resp_1"}}, 400);
  EXPECT_EQ(e["error"]["param"], "previous_response_id");
  EXPECT_EQ(Call("GET", "/v1/responses").status, 405);
  EXPECT_NE(
      Call("GET", "/metrics")
          .body.find("ferry_http_requests_total{endpoint=\"/v1/responses\",status=\"200\"} 4"),
      std::string::npos);
}

// Function tools: a call the model writes is a function_call output item,
// whole, and streamed as argument deltas.
TEST_F(GatewayTest, ResponsesReturnFunctionCallItems) {
  backend_.script_ = {"<tool", "_call>{\"name\": \"get_weather\", ",
                      "\"arguments\": {\"city\": \"Oslo\"}}</tool_call>"};
  const Json tools = Json::parse(R"([{"type": "function", "name": "get_weather",
                                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])");
  Json r = Post("/v1/responses", {{"input", "weather?"}, {"tools", tools}});
  ASSERT_EQ(r["output"].size(), 1u) << r;
  const Json& call = r["output"][0];
  EXPECT_EQ(call["type"], "function_call");
  EXPECT_EQ(call["name"], "get_weather");
  EXPECT_EQ(Json::parse(call["arguments"].get<std::string>()), Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(call["call_id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(call["id"].get<std::string>().rfind("fc_", 0), 0u);
  EXPECT_EQ(r["tools"], tools);

  HttpResponse h = Call("POST", "/v1/responses",
                        Json{{"input", "weather?"}, {"tools", tools}, {"stream", true}}.dump());
  StringWriter w;
  h.stream(w);
  AccumulatedResponse a = Accumulate(ResponseEvents(w.out));
  ASSERT_EQ(a.output.size(), 1u) << w.out;
  EXPECT_EQ(a.output[0]["name"], "get_weather");
  EXPECT_EQ(Json::parse(a.output[0]["arguments"].get<std::string>()),
            Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(a.response["output"][0]["arguments"], a.output[0]["arguments"]);
  EXPECT_EQ(a.response["output"][0]["status"], "completed");
  EXPECT_NE(std::find(a.types.begin(), a.types.end(), "response.function_call_arguments.done"),
            a.types.end());
}

// With a reasoning parser the thinking comes back as reasoning_content,
// whole and streamed ahead of the content; tool calls are looked for in
// the content only; a grammar applies to the answer after the thinking.
TEST_F(GatewayTest, ReasoningParserReturnsTheThinkingApart) {
  GatewayOptions options;
  options.reasoning_format = ReasoningFormat::kDeepSeekR1;
  Make(options);
  backend_.script_ = {"Two and", " two.</th", "ink>\n\nIt is", " 4."};
  const Json messages = Json::array({Json{{"role", "user"}, {"content", "2+2?"}}});
  Json r = Post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 50}});
  EXPECT_EQ(r["choices"][0]["message"]["reasoning_content"], "Two and two.");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "\n\nIt is 4.");
  // Three of the four tokens are the thinking's, the one with its end among them.
  EXPECT_EQ(r["usage"]["completion_tokens"], 4);
  EXPECT_EQ(r["usage"]["completion_tokens_details"]["reasoning_tokens"], 3);

  auto events =
      Stream(Call("POST", "/v1/chat/completions",
                  Json{{"messages", messages}, {"max_tokens", 50}, {"stream", true}}.dump()));
  std::string reasoning, content;
  bool content_seen = false;
  for (const std::string& e : events) {
    if (e == "[DONE]") continue;
    const Json delta = Json::parse(e)["choices"][0]["delta"];
    if (delta.contains("reasoning_content")) {
      EXPECT_FALSE(content_seen) << "thinking after the answer began: " << e;
      reasoning += delta["reasoning_content"].get<std::string>();
    }
    if (delta.contains("content") && delta["content"].is_string()) {
      content += delta["content"].get<std::string>();
      content_seen = content_seen || !delta["content"].get<std::string>().empty();
    }
  }
  EXPECT_EQ(reasoning, "Two and two.");
  EXPECT_EQ(content, "\n\nIt is 4.");

  // Thinking that never ends is all reasoning; the content is null.
  backend_.script_ = {"Hmm", ", still"};
  r = Post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 2}});
  EXPECT_EQ(r["choices"][0]["message"]["reasoning_content"], "Hmm, still");
  EXPECT_TRUE(r["choices"][0]["message"]["content"].is_null());

  // A tool call after the thinking; a call inside it is only thought of.
  backend_.script_ = {
      "Maybe <tool_call>{\"name\": \"f\"}</tool_call>?</think>",
      "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>"};
  const Json tools = Json::array(
      {Json{{"type", "function"},
            {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}},
       Json{{"type", "function"}, {"function", {{"name", "f"}}}}});
  r = Post("/v1/chat/completions", {{"messages", messages}, {"tools", tools}, {"max_tokens", 50}});
  const Json& m = r["choices"][0]["message"];
  EXPECT_EQ(m["reasoning_content"], "Maybe <tool_call>{\"name\": \"f\"}</tool_call>?");
  ASSERT_EQ(m["tool_calls"].size(), 1u) << r;
  EXPECT_EQ(m["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "tool_calls");

  // The Responses API: a reasoning item before the message.
  backend_.script_ = {"Two and", " two.</th", "ink>\n\nIt is", " 4."};
  r = Post("/v1/responses", {{"input", "2+2?"}});
  ASSERT_EQ(r["output"].size(), 2u) << r;
  EXPECT_EQ(r["output"][0]["type"], "reasoning");
  EXPECT_EQ(r["output"][0]["content"][0]["text"], "Two and two.");
  EXPECT_EQ(r["output"][1]["content"][0]["text"], "\n\nIt is 4.");
  EXPECT_EQ(r["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
  HttpResponse h = Call("POST", "/v1/responses", R"({"input":"2+2?","stream":true})");
  StringWriter w;
  h.stream(w);
  AccumulatedResponse a = Accumulate(ResponseEvents(w.out));
  ASSERT_EQ(a.output.size(), 2u) << w.out;
  EXPECT_EQ(a.response["output"], r["output"].size() == 2 ? a.response["output"] : Json());
  EXPECT_EQ(a.response["output"][0]["content"][0]["text"], "Two and two.");
  EXPECT_EQ(a.output[1]["content"][0]["text"], "\n\nIt is 4.");
  EXPECT_NE(std::find(a.types.begin(), a.types.end(), "response.reasoning_text.delta"),
            a.types.end());

  // A grammar applies to the answer after the thinking: the engine is told
  // where the thinking ends, and the split stays.
  backend_.script_ = {"Let me see.</think>", "{\"a\": 1}"};
  r = Post(
      "/v1/chat/completions",
      {{"messages", messages}, {"max_tokens", 50}, {"response_format", {{"type", "json_object"}}}});
  EXPECT_EQ(r["choices"][0]["message"]["content"], "{\"a\": 1}");
  EXPECT_EQ(r["choices"][0]["message"]["reasoning_content"], "Let me see.");
  v1::GenerateRequest sent = backend_.requests().back();
  EXPECT_EQ(sent.params().reasoning().end(), "</think>");
  EXPECT_EQ(sent.params().reasoning().start(), "");  // deepseek_r1: the answer opens thinking
  EXPECT_FALSE(sent.params().reasoning().has_budget_tokens());
  // Free text needs no bounds in the engine.
  Post("/v1/chat/completions", {{"messages", messages}, {"max_tokens", 50}});
  EXPECT_FALSE(backend_.requests().back().params().has_reasoning());
}

// A forced tool call after the thinking: the call streams from the content
// once the thinking is over, which streams ahead as reasoning_content.
TEST_F(GatewayTest, ForcedToolCallFollowsTheThinking) {
  GatewayOptions options;
  options.reasoning_format = ReasoningFormat::kQwen3;
  Make(options);
  const Json messages = Json::array({Json{{"role", "user"}, {"content", "weather in Oslo?"}}});
  const Json tools = Json::array(
      {Json{{"type", "function"},
            {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}}});
  const Json choice = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
  backend_.script_ = {"<think>", "Oslo is a city", ".</think>", "{\"city\": ", "\"Oslo\"}"};
  Json r =
      Post("/v1/chat/completions",
           {{"messages", messages}, {"tools", tools}, {"tool_choice", choice}, {"max_tokens", 50}});
  const Json& m = r["choices"][0]["message"];
  EXPECT_EQ(m["reasoning_content"], "Oslo is a city.");
  ASSERT_EQ(m["tool_calls"].size(), 1u) << r;
  EXPECT_EQ(Json::parse(m["tool_calls"][0]["function"]["arguments"].get<std::string>()),
            Json::parse(R"({"city":"Oslo"})"));
  const v1::ReasoningBounds bounds = backend_.requests().back().params().reasoning();
  EXPECT_EQ(bounds.start(), "<think>");  // qwen3: only an answer that opens with it thinks
  EXPECT_EQ(bounds.end(), "</think>");

  auto events = Stream(Call("POST", "/v1/chat/completions",
                            Json{{"messages", messages},
                                 {"tools", tools},
                                 {"tool_choice", choice},
                                 {"max_tokens", 50},
                                 {"stream", true}}
                                .dump()));
  std::string reasoning, arguments, name;
  for (const std::string& e : events) {
    if (e == "[DONE]") continue;
    const Json delta = Json::parse(e)["choices"][0]["delta"];
    if (delta.contains("reasoning_content")) {
      EXPECT_TRUE(arguments.empty()) << "thinking after the call began: " << e;
      reasoning += delta["reasoning_content"].get<std::string>();
    }
    if (delta.contains("tool_calls")) {
      const Json& f = delta["tool_calls"][0]["function"];
      if (f.contains("name")) name += f["name"].get<std::string>();
      arguments += f["arguments"].get<std::string>();
    }
  }
  EXPECT_EQ(reasoning, "Oslo is a city.");
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(Json::parse(arguments), Json::parse(R"({"city":"Oslo"})"));
}

// vLLM's thinking_token_budget goes to the engine with the format's tags;
// it is refused without a reasoning parser, and checked.
TEST_F(GatewayTest, ThinkingTokenBudget) {
  const Json messages = Json::array({Json{{"role", "user"}, {"content", "2+2?"}}});
  Json e =
      Post("/v1/chat/completions", {{"messages", messages}, {"thinking_token_budget", 10}}, 400);
  EXPECT_EQ(e["error"]["param"], "thinking_token_budget");
  GatewayOptions options;
  options.reasoning_format = ReasoningFormat::kDeepSeekR1;
  Make(options);
  backend_.script_ = {"Four", ".</think>", "4"};
  Json r = Post("/v1/chat/completions", {{"messages", messages}, {"thinking_token_budget", 10}});
  EXPECT_EQ(r["choices"][0]["message"]["reasoning_content"], "Four.");
  const v1::ReasoningBounds bounds = backend_.requests().back().params().reasoning();
  EXPECT_EQ(bounds.end(), "</think>");
  EXPECT_EQ(bounds.budget_tokens(), 10);
  for (const Json& bad : {Json(-1), Json("10"), Json(1.5)}) {
    e = Post("/v1/chat/completions", {{"messages", messages}, {"thinking_token_budget", bad}}, 400);
    EXPECT_EQ(e["error"]["param"], "thinking_token_budget") << bad;
  }
  // Anthropic's thinking.budget_tokens maps onto it; a model without a
  // reasoning parser has no thinking to bound and ignores it.
  const Json message = {{"model", "stories260K.gguf"},
                        {"max_tokens", 2000},
                        {"messages", messages},
                        {"thinking", {{"type", "enabled"}, {"budget_tokens", 1024}}}};
  Post("/v1/messages", message);
  EXPECT_EQ(backend_.requests().back().params().reasoning().budget_tokens(), 1024);
  Make(GatewayOptions{});
  Post("/v1/messages", message);
  EXPECT_FALSE(backend_.requests().back().params().has_reasoning());
  // Anthropic's own rules for the budget, in its error shape.
  for (const Json& thinking : {Json{{"type", "enabled"}, {"budget_tokens", 1000}},
                               Json{{"type", "enabled"}, {"budget_tokens", 2000}},
                               Json{{"type", "enabled"}}, Json{{"type", "sometimes"}}}) {
    Json bad = message;
    bad["thinking"] = thinking;
    e = Post("/v1/messages", bad, 400);
    EXPECT_EQ(e["type"], "error") << thinking;
    EXPECT_EQ(e["error"]["type"], "invalid_request_error") << thinking;
    EXPECT_NE(e["error"]["message"].get<std::string>().find("thinking"), std::string::npos) << e;
  }
  // "disabled" asks the template for no thinking unless the request says.
  Json off = message;
  off["thinking"] = Json{{"type", "disabled"}};
  auto parsed = ParseAnthropicRequest(off, /*count_tokens=*/false);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->chat_body["chat_template_kwargs"]["enable_thinking"], false);
  EXPECT_FALSE(parsed->thinking_budget.has_value());
}

// A model's generation_config.json sampling values are the defaults for
// what a request leaves out (vLLM's --generation-config auto); what a
// request says wins, and --generation-config none restores OpenAI's.
TEST_F(GatewayTest, GenerationConfigDefaultsFillWhatTheRequestLeavesOut) {
  const std::string dir = ferry::testing::UniqueTempPath("generation_config");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/generation_config.json")
      << R"({"do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.05,
            "max_new_tokens": 7, "eos_token_id": [1, 2]})";
  auto defaults = ReadSamplingDefaults(dir + "/generation_config.json");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->Describe(),
            "temperature=0.6 top_p=0.95 top_k=20 repetition_penalty=1.05 max_tokens=7");
  assets_->set_sampling_defaults(*defaults);
  Make(GatewayOptions{});
  const Json messages = Json::array({Json{{"role", "user"}, {"content", "hi"}}});
  Post("/v1/chat/completions", {{"messages", messages}});
  v1::SamplingParams p = backend_.requests().back().params();
  EXPECT_FLOAT_EQ(p.temperature(), 0.6f);
  EXPECT_FLOAT_EQ(p.top_p(), 0.95f);
  EXPECT_EQ(p.top_k(), 20);
  EXPECT_FLOAT_EQ(p.repetition_penalty(), 1.05f);
  EXPECT_EQ(p.max_tokens(), 7);
  Post("/v1/chat/completions",
       {{"messages", messages}, {"temperature", 0}, {"top_k", -1}, {"max_tokens", 12}});
  p = backend_.requests().back().params();
  EXPECT_EQ(p.temperature(), 0.0f);
  EXPECT_EQ(p.top_k(), 0);
  EXPECT_EQ(p.max_tokens(), 12);
  EXPECT_FLOAT_EQ(p.top_p(), 0.95f);
  // Completions keep OpenAI's 16-token default unless the model's is lower.
  Post("/v1/completions", {{"prompt", "Once"}});
  EXPECT_EQ(backend_.requests().back().params().max_tokens(), 7);
  Post("/v1/responses", {{"input", "hi"}});
  EXPECT_FLOAT_EQ(backend_.requests().back().params().temperature(), 0.6f);

  GatewayOptions off;
  off.use_generation_config = false;
  Make(off);
  Post("/v1/chat/completions", {{"messages", messages}});
  p = backend_.requests().back().params();
  EXPECT_FLOAT_EQ(p.temperature(), 1.0f);
  EXPECT_EQ(p.top_k(), 0);
  EXPECT_GT(p.max_tokens(), 7);

  // A bad file is an error naming the file and the field.
  for (const char* bad : {R"({"temperature": "hot"})", R"({"top_p": 0})", R"({"top_k": 1.5})",
                          R"({"max_new_tokens": 0})", R"([1])", R"({"repetition_penalty": -1})"}) {
    std::ofstream(dir + "/generation_config.json") << bad;
    auto r = ReadSamplingDefaults(dir + "/generation_config.json");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(std::string(r.status().message()).find("generation_config.json"), std::string::npos)
        << r.status();
  }
  std::filesystem::remove_all(dir);
}

// Anthropic's Messages API: a Message whole, its events streamed (each
// delta inside a started block), tool_use blocks, stop sequences,
// count_tokens, x-api-key, and errors in Anthropic's shape.
TEST_F(GatewayTest, AnthropicMessagesAnswerAsMessagesAndEvents) {
  const Json messages = Json::array({Json{{"role", "user"}, {"content", "Hello"}}});
  Json r = Post("/v1/messages", {{"model", "stories260K.gguf"},
                                 {"max_tokens", 9},
                                 {"system", "Be kind."},
                                 {"messages", messages}});
  v1::GenerateRequest req = backend_.requests().back();
  const std::vector<int32_t> ids(req.prompt_ids().begin(), req.prompt_ids().end());
  EXPECT_NE(assets_->tokenizer().Decode(ids, false).find("<|im_start|>system\nBe kind.<|im_end|>"),
            std::string::npos);
  EXPECT_EQ(r["type"], "message");
  EXPECT_EQ(r["role"], "assistant");
  EXPECT_EQ(r["id"].get<std::string>().rfind("msg_", 0), 0u);
  ASSERT_EQ(r["content"].size(), 1u);
  EXPECT_EQ(r["content"][0], Json::parse(R"({"type": "text", "text": "t0 t1 t2 t3 "})"));
  EXPECT_EQ(r["stop_reason"], "end_turn");
  EXPECT_EQ(r["usage"]["input_tokens"], req.prompt_ids_size());
  EXPECT_EQ(r["usage"]["output_tokens"], 4);
  r = Post("/v1/messages", {{"max_tokens", 2}, {"messages", messages}});
  EXPECT_EQ(r["stop_reason"], "max_tokens");

  // Streamed.
  HttpResponse h = Call("POST", "/v1/messages",
                        Json{{"max_tokens", 9}, {"messages", messages}, {"stream", true}}.dump());
  StringWriter w;
  h.stream(w);
  std::vector<std::string> types;
  Json blocks = Json::array();
  Json final_delta;
  for (const auto& [name, e] : ResponseEvents(w.out)) {
    EXPECT_EQ(name, e["type"]);
    types.push_back(name);
    if (name == "content_block_start") {
      EXPECT_EQ(e["index"], blocks.size());
      blocks.push_back(e["content_block"]);
    } else if (name == "content_block_delta") {
      Json& b = blocks.at(e["index"].get<size_t>());
      ASSERT_EQ(e["delta"]["type"], "text_delta");
      b["text"] = b["text"].get<std::string>() + e["delta"]["text"].get<std::string>();
    } else if (name == "message_delta") {
      final_delta = e;
    }
  }
  ASSERT_GE(types.size(), 5u) << w.out;
  EXPECT_EQ(types.front(), "message_start");
  EXPECT_EQ(types.back(), "message_stop");
  EXPECT_EQ(blocks, Json::parse(R"([{"type": "text", "text": "t0 t1 t2 t3 "}])"));
  EXPECT_EQ(final_delta["delta"]["stop_reason"], "end_turn");
  EXPECT_EQ(final_delta["usage"]["output_tokens"], 4);

  // Tools: tool_use blocks with parsed input; the conversation goes on
  // with tool_result blocks.
  backend_.script_ = {"<tool_call>{\"name\": \"get_weather\", ",
                      "\"arguments\": {\"city\": \"Oslo\"}}</tool_call>"};
  const Json tools = Json::parse(R"([{"name": "get_weather", "description": "d",
                                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])");
  r = Post("/v1/messages", {{"max_tokens", 50}, {"messages", messages}, {"tools", tools}});
  ASSERT_EQ(r["content"].size(), 1u) << r;
  EXPECT_EQ(r["content"][0]["type"], "tool_use");
  EXPECT_EQ(r["content"][0]["name"], "get_weather");
  EXPECT_EQ(r["content"][0]["input"], Json::parse(R"({"city": "Oslo"})"));
  EXPECT_EQ(r["stop_reason"], "tool_use");
  const std::string tool_id = r["content"][0]["id"];
  h = Call(
      "POST", "/v1/messages",
      Json{{"max_tokens", 50}, {"messages", messages}, {"tools", tools}, {"stream", true}}.dump());
  StringWriter tw;
  h.stream(tw);
  std::string partial;
  for (const auto& [name, e] : ResponseEvents(tw.out)) {
    if (name == "content_block_start") EXPECT_EQ(e["content_block"]["type"], "tool_use");
    if (name == "content_block_delta") partial += e["delta"]["partial_json"].get<std::string>();
    if (name == "message_delta") EXPECT_EQ(e["delta"]["stop_reason"], "tool_use");
  }
  EXPECT_EQ(Json::parse(partial), Json::parse(R"({"city": "Oslo"})"));
  backend_.script_.clear();
  Json history = messages;
  history.push_back(Json{{"role", "assistant"}, {"content", r["content"]}});
  history.push_back(Json{
      {"role", "user"},
      {"content", Json::array({Json{
                      {"type", "tool_result"}, {"tool_use_id", tool_id}, {"content", "cold"}}})}});
  std::string rendered;
  {
    auto parsed = ParseAnthropicRequest(Json{{"max_tokens", 5}, {"messages", history}}, false);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    const Json& m = parsed->chat_body["messages"];
    ASSERT_EQ(m.size(), 3u) << m;
    EXPECT_EQ(m[1]["tool_calls"][0]["id"], tool_id);
    EXPECT_EQ(Json::parse(m[1]["tool_calls"][0]["function"]["arguments"].get<std::string>()),
              r["content"][0]["input"]);
    EXPECT_EQ(m[2], Json::parse(absl::StrCat(R"({"role": "tool", "tool_call_id": ")", tool_id,
                                             R"(", "content": "cold"})")));
  }

  // Stop sequences come back as such.
  backend_.stop_reason_ = "END";
  r = Post("/v1/messages",
           {{"max_tokens", 50}, {"messages", messages}, {"stop_sequences", {"END"}}});
  EXPECT_EQ(r["stop_reason"], "stop_sequence");
  EXPECT_EQ(r["stop_sequence"], "END");
  backend_.stop_reason_.clear();

  // count_tokens renders the prompt as generation would.
  r = Post("/v1/messages/count_tokens", {{"messages", messages}, {"system", "Be kind."}});
  EXPECT_EQ(r["input_tokens"], req.prompt_ids_size());

  // Errors in Anthropic's shape.
  for (const Json& body :
       {Json{{"messages", messages}}, Json{{"max_tokens", 5}},
        Json{{"max_tokens", 5}, {"messages", Json::array()}},
        Json{{"max_tokens", 5}, {"messages", messages}, {"temperature", -1}},
        Json{{"max_tokens", 5},
             {"messages", messages},
             {"tools", Json::parse(R"([{"type": "web_search_20250305", "name": "w"}])")}},
        Json{{"max_tokens", 5},
             {"messages", Json::parse(R"([{"role": "user", "content": [{"type": "image"}]}])")}}}) {
    Json e = Post("/v1/messages", body, 400);
    EXPECT_EQ(e["type"], "error") << body;
    EXPECT_EQ(e["error"]["type"], "invalid_request_error") << body;
    EXPECT_FALSE(e["error"]["message"].get<std::string>().empty());
  }
  Json e =
      Post("/v1/messages", {{"model", "claude-x"}, {"max_tokens", 5}, {"messages", messages}}, 404);
  EXPECT_EQ(e["error"]["type"], "not_found_error");

  // x-api-key is taken as the API key. (A finished stream still holds its
  // run, which must go before the gateway it belongs to.)
  h = HttpResponse();
  GatewayOptions keyed;
  keyed.api_keys = {"sk-1"};
  Make(keyed);
  HttpRequest hr{"POST",
                 "/v1/messages",
                 Json{{"max_tokens", 5}, {"messages", messages}}.dump(),
                 {},
                 "127.0.0.1"};
  EXPECT_EQ(gateway_->Handle(hr).status, 401);
  EXPECT_EQ(Json::parse(gateway_->Handle(hr).body)["error"]["type"], "authentication_error");
  hr.headers.emplace_back("x-api-key", "sk-1");
  EXPECT_EQ(gateway_->Handle(hr).status, 200);
}

// Echo with max_tokens 0 (as vLLM takes it, for scoring a prompt): the
// prompt and its logprobs only; the backend runs one token, not returned.
TEST_F(GatewayTest, EchoWithNoTokensReturnsThePromptOnly) {
  Json r = Post("/v1/completions",
                {{"prompt", "Once upon a time"}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 1}});
  const Json& c = r["choices"][0];
  EXPECT_EQ(c["text"], "Once upon a time");
  EXPECT_EQ(c["finish_reason"], "length");
  const size_t prompt = backend_.requests().back().prompt_ids_size();
  EXPECT_EQ(backend_.requests().back().params().max_tokens(), 1);
  EXPECT_EQ(c["logprobs"]["tokens"].size(), prompt);
  EXPECT_NEAR(c["logprobs"]["token_logprobs"][prompt - 1].get<double>(), -0.1 * static_cast<double>(prompt - 1),
              1e-6);
  EXPECT_EQ(r["usage"]["completion_tokens"], 0);

  auto events = Stream(Call("POST", "/v1/completions",
                            R"({"prompt":"Once upon a time","max_tokens":0,"echo":true,"stream":true})"));
  ASSERT_EQ(events.size(), 3u);  // the echo, the end, [DONE]
  EXPECT_EQ(Json::parse(events[0])["choices"][0]["text"], "Once upon a time");
  Json end = Json::parse(events[1]);
  EXPECT_EQ(end["choices"][0]["text"], "");
  EXPECT_EQ(end["choices"][0]["finish_reason"], "length");

  // Without echo there would be nothing to return; chat needs a token.
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"a","max_tokens":0})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/chat/completions",
                 R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":0})").status, 400);
}

TEST_F(GatewayTest, StreamedCompletionEndsWithUsageAndDone) {
  HttpResponse resp = Call("POST", "/v1/completions",
                           R"({"prompt":"a","max_tokens":3,"stream":true,"stream_options":{"include_usage":true}})");
  EXPECT_EQ(resp.content_type, "text/event-stream");
  auto events = Stream(std::move(resp));
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.back(), "[DONE]");
  Json usage = Json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 3);
  std::string text;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    Json chunk = Json::parse(events[i]);
    EXPECT_TRUE(chunk.contains("usage") && chunk["usage"].is_null());
    text += chunk["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(text, "t0 t1 t2 ");
  EXPECT_EQ(Json::parse(events[events.size() - 3])["choices"][0]["finish_reason"], "length");
}

TEST_F(GatewayTest, ChatRendersTheTemplate) {
  Json r = Post("/v1/chat/completions",
                {{"messages", Json::array({Json{{"role", "user"}, {"content", "hi"}}})}, {"max_tokens", 2},
                 {"logprobs", true}, {"top_logprobs", 1}});
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "t0 t1 ");
  const Json& lp = r["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_TRUE(lp[0]["bytes"].is_array());
  EXPECT_EQ(lp[0]["top_logprobs"].size(), 1u);
  auto sent = backend_.requests();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].prompt_ids(0), assets_->tokenizer().Encode("<|im_start|>", false, true)[0]);
}

TEST_F(GatewayTest, StreamedChatStartsWithTheRole) {
  auto events = Stream(Call("POST", "/v1/chat/completions",
                            R"({"messages":[{"role":"user","content":"x"}],"max_tokens":2,"stream":true,"n":2})"));
  ASSERT_GE(events.size(), 3u);
  Json first = Json::parse(events[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(events.back(), "[DONE]");
  int finished = 0;
  for (const auto& e : events) {
    if (e == "[DONE]") continue;
    if (!Json::parse(e)["choices"][0]["finish_reason"].is_null()) ++finished;
  }
  EXPECT_EQ(finished, 2);
}

// tool_choice "auto" (the default with tools): a call the model writes
// comes back as tool_calls, whole and streamed; the text before it is the
// content, and a stream holds back what may be the start of a call.
TEST_F(GatewayTest, ToolCallsInTheAnswerBecomeToolCalls) {
  backend_.script_ = {"Checking", " the weather. <tool", "_call>{\"name\": \"get_weather\", ",
                      "\"arguments\": {\"city\": \"Oslo\"}}</tool_call>"};
  const Json tools = Json::array(
      {Json{{"type", "function"},
            {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}}});
  const Json messages = Json::array({Json{{"role", "user"}, {"content", "weather?"}}});
  Json r =
      Post("/v1/chat/completions", {{"messages", messages}, {"tools", tools}, {"max_tokens", 50}});
  const Json& choice = r["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["message"]["content"], "Checking the weather.");
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
  EXPECT_EQ(choice["message"]["tool_calls"][0]["type"], "function");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["arguments"], R"({"city":"Oslo"})");

  Json body = {{"messages", messages}, {"tools", tools}, {"max_tokens", 50}, {"stream", true}};
  auto events = Stream(Call("POST", "/v1/chat/completions", body.dump()));
  StreamedMessage m;
  for (const auto& e : events) {
    m.Add(e);
    EXPECT_EQ(m.content.find("<tool"), std::string::npos) << e;
  }
  EXPECT_EQ(m.content, "Checking the weather. ");
  ASSERT_EQ(m.calls.size(), 1u);
  EXPECT_EQ(m.calls[0]["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(m.calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(Json::parse(m.calls[0]["function"]["arguments"].get<std::string>()),
            Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(m.finish, "tool_calls");
  // The name went out as soon as it was written, before the last token.
  EXPECT_GE(m.calls_before_finish, 1);

  // Without a call (or with tool_choice "none"), the text is the content.
  backend_.script_ = {"No ", "<tools> ", "here."};
  r = Post("/v1/chat/completions", {{"messages", messages}, {"tools", tools}, {"max_tokens", 50}});
  EXPECT_EQ(r["choices"][0]["message"]["content"], "No <tools> here.");
  EXPECT_FALSE(r["choices"][0]["message"].contains("tool_calls"));
  body["stream"] = true;
  events = Stream(Call("POST", "/v1/chat/completions", body.dump()));
  m = StreamedMessage();
  for (const auto& e : events) m.Add(e);
  EXPECT_EQ(m.content, "No <tools> here.");
  EXPECT_TRUE(m.calls.empty());
}

// Streamed tool calls arrive as the openai SDKs merge them: a call's id, type
// and name in its first delta, its arguments in pieces as they are written,
// and the merged calls equal the non-streamed response's.
TEST_F(GatewayTest, ToolCallArgumentsStreamAsTheyAreWritten) {
  const Json tools = Json::array(
      {Json{{"type", "function"},
            {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}},
       Json{{"type", "function"}, {"function", {{"name", "now"}}}}});
  const Json messages = Json::array({Json{{"role", "user"}, {"content", "weather?"}}});
  struct Case {
    std::vector<std::string> script;
    std::vector<std::pair<std::string, std::string>> calls;  // name, arguments
    int min_argument_pieces;  // of the first call, before the last token
    std::string content;
  };
  const std::vector<Case> cases = {
      // Hermes, two calls; the second writes its arguments before its name.
      {{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"ci", "ty\": \"Os",
        "lo\", \"days\": [1, ", "2]}}\n</tool_call>\n<tool_call>{\"arguments\": {\"tz\": ",
        "\"UTC\"}, \"name\": \"now\"}</tool_call>"},
       {{"get_weather", R"({"city":"Oslo","days":[1,2]})"}, {"now", R"({"tz":"UTC"})"}},
       3,
       ""},
      // Mistral's marker and list, after some content.
      {{"Let me check.", " [TOOL_CALLS] [{\"name\": \"now\", ", "\"arguments\": {}}, {\"name\"",
        ": \"get_weather\", \"arguments\": {\"city\": \"Bergen\"}}]"},
       {{"now", "{}"}, {"get_weather", R"({"city":"Bergen"})"}},
       1,
       "Let me check. "},  // streamed content keeps the space before the marker
      // A bare JSON call whose arguments are a JSON string: sent whole at the end.
      {{"{\"name\": \"get_weather\", ", "\"parameters\": \"{\\\"city\\\": \\\"Oslo\\\"}\"}"},
       {{"get_weather", R"({"city":"Oslo"})"}},
       0,
       ""},
      // A call without arguments.
      {{"<tool_call>{\"name\": \"now\"", "}</tool_call>"}, {{"now", "{}"}}, 0, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.script[0]);
    backend_.script_ = c.script;
    Json whole = Post("/v1/chat/completions",
                      {{"messages", messages}, {"tools", tools}, {"max_tokens", 50}});
    const Json& message = whole["choices"][0]["message"];
    ASSERT_EQ(message["tool_calls"].size(), c.calls.size()) << whole.dump();
    Json body = {{"messages", messages}, {"tools", tools}, {"max_tokens", 50}, {"stream", true}};
    StreamedMessage m;
    for (const auto& e : Stream(Call("POST", "/v1/chat/completions", body.dump()))) m.Add(e);
    EXPECT_EQ(m.finish, "tool_calls");
    EXPECT_EQ(m.content, c.content);
    ASSERT_EQ(m.calls.size(), c.calls.size());
    for (size_t i = 0; i < c.calls.size(); ++i) {
      const std::string id = m.calls[i]["id"].get<std::string>();
      EXPECT_EQ(id.rfind("call_", 0), 0u) << id;
      EXPECT_EQ(id.substr(id.size() - 2), absl::StrCat("-", i)) << id;
      EXPECT_EQ(m.calls[i]["type"], "function");
      EXPECT_EQ(m.calls[i]["function"]["name"], c.calls[i].first);
      EXPECT_EQ(message["tool_calls"][i]["function"]["name"], c.calls[i].first);
      const Json want = Json::parse(c.calls[i].second);
      EXPECT_EQ(Json::parse(m.calls[i]["function"]["arguments"].get<std::string>()), want);
      EXPECT_EQ(Json::parse(message["tool_calls"][i]["function"]["arguments"].get<std::string>()),
                want);
    }
    EXPECT_GE(m.argument_pieces_before_finish, c.min_argument_pieces);
  }

  // A call to a function the request does not list is not a call: nothing
  // streams as one, and the whole text is the content.
  backend_.script_ = {"<tool_call>{\"name\": \"other\", ", "\"arguments\": {}}</tool_call>"};
  Json body = {{"messages", messages}, {"tools", tools}, {"max_tokens", 50}, {"stream", true}};
  StreamedMessage m;
  for (const auto& e : Stream(Call("POST", "/v1/chat/completions", body.dump()))) m.Add(e);
  EXPECT_TRUE(m.calls.empty());
  EXPECT_EQ(m.content, "<tool_call>{\"name\": \"other\", \"arguments\": {}}</tool_call>");
  EXPECT_EQ(m.finish, "stop");

  // parallel_tool_calls false: the first call only, whole or streamed.
  backend_.script_ = cases[0].script;
  Json one = Post("/v1/chat/completions", {{"messages", messages},
                                           {"tools", tools},
                                           {"max_tokens", 50},
                                           {"parallel_tool_calls", false}});
  ASSERT_EQ(one["choices"][0]["message"]["tool_calls"].size(), 1u);
  EXPECT_EQ(one["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
  Json one_body = body;
  one_body["parallel_tool_calls"] = false;
  m = StreamedMessage();
  for (const auto& e : Stream(Call("POST", "/v1/chat/completions", one_body.dump()))) m.Add(e);
  ASSERT_EQ(m.calls.size(), 1u);
  EXPECT_EQ(m.calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(m.finish, "tool_calls");
  one_body["parallel_tool_calls"] = "no";
  EXPECT_EQ(Call("POST", "/v1/chat/completions", one_body.dump()).status, 400);

  // tool_choice "required": the forced list streams the same way.
  backend_.script_ = {"[{\"name\": \"get_weather\", \"parameters\": {\"city\": ", "\"Oslo\"}}, ",
                      "{\"name\": \"now\", \"parameters\": {}}]"};
  body["tool_choice"] = "required";
  m = StreamedMessage();
  for (const auto& e : Stream(Call("POST", "/v1/chat/completions", body.dump()))) m.Add(e);
  EXPECT_EQ(m.finish, "tool_calls");
  ASSERT_EQ(m.calls.size(), 2u);
  EXPECT_EQ(m.calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(Json::parse(m.calls[0]["function"]["arguments"].get<std::string>()),
            Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(m.calls[1]["function"]["name"], "now");
  EXPECT_EQ(Json::parse(m.calls[1]["function"]["arguments"].get<std::string>()), Json::object());
  EXPECT_GE(m.calls_before_finish, 1);
}

// The Responses API's truncation "auto": a conversation too long for the
// context loses its oldest turns (never the instructions or the last
// message) until it fits; "disabled" (the default) is a 400.
TEST_F(GatewayTest, ResponsesTruncationAutoDropsTheOldestTurns) {
  GatewayOptions o;
  o.max_model_len = 300;
  Make(o);
  Json input = Json::array();
  for (int i = 0; i < 6; ++i) {
    input.push_back(
        Json{{"role", "user"}, {"content", absl::StrCat("question ", i, " is long enough")}});
    input.push_back(
        Json{{"role", "assistant"}, {"content", absl::StrCat("answer ", i, " as well")}});
  }
  input.push_back(Json{{"role", "user"}, {"content", "the last question"}});
  const Json body = {{"input", input}, {"instructions", "Be brief."}, {"max_output_tokens", 16}};
  Json e = Post("/v1/responses", body, 400);
  EXPECT_EQ(e["error"]["code"], "context_length_exceeded");
  EXPECT_TRUE(backend_.requests().empty());

  Json truncated = body;
  truncated["truncation"] = "auto";
  Json r = Post("/v1/responses", truncated);
  EXPECT_EQ(r["status"], "completed") << r;
  EXPECT_EQ(r["truncation"], "auto");
  ASSERT_EQ(backend_.requests().size(), 1u);
  const v1::GenerateRequest sent = backend_.requests().back();
  EXPECT_LE(sent.prompt_ids_size() + 16, 300);
  const std::string prompt = assets_->tokenizer().Decode(
      std::vector<int32_t>(sent.prompt_ids().begin(), sent.prompt_ids().end()), false);
  EXPECT_NE(prompt.find("Be brief."), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("the last question"), std::string::npos) << prompt;
  EXPECT_EQ(prompt.find("question 0"), std::string::npos) << prompt;  // the oldest went first
  EXPECT_NE(prompt.find("answer 5"), std::string::npos) << prompt;    // the newest stayed
  // What follows the system message is still a user turn.
  const size_t system_end = prompt.find("Be brief.");
  const size_t next_turn = prompt.find("<|im_start|>", system_end);
  EXPECT_EQ(prompt.substr(next_turn, 16), "<|im_start|>user") << prompt;

  // A last message that alone does not fit is still an error.
  truncated["input"] = std::string(2000, 'x');
  e = Post("/v1/responses", truncated, 400);
  EXPECT_EQ(e["error"]["code"], "context_length_exceeded");
}

TEST_F(GatewayTest, ChatWithoutATemplateIs400) {
  Make(GatewayOptions{}, plain_assets_.get());
  Json r = Post("/v1/chat/completions", {{"messages", Json::array({Json{{"role", "user"}, {"content", "hi"}}})}},
                400);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("no chat template"), std::string::npos);
}

TEST_F(GatewayTest, ContextOverflowNamesBothNumbers) {
  GatewayOptions o;
  o.max_model_len = 32;
  Make(o);
  Json r = Post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 100}}, 400);
  std::string msg = r["error"]["message"];
  EXPECT_NE(msg.find("32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("100"), std::string::npos) << msg;
  EXPECT_EQ(r["error"]["code"], "context_length_exceeded");
  EXPECT_TRUE(backend_.requests().empty());
}

TEST_F(GatewayTest, MalformedBodiesAre400) {
  for (const char* body : {"", "{", "[1]", "\"x\"", "{\"prompt\": \"\xff\"}", "null"}) {
    HttpResponse r = Call("POST", "/v1/completions", body);
    EXPECT_EQ(r.status, 400) << body;
    Json j = Json::parse(r.body);
    EXPECT_TRUE(j["error"].contains("message") && j["error"].contains("type") && j["error"].contains("param") &&
                j["error"].contains("code"));
  }
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"a","model":"other"})").status, 404);
}

TEST_F(GatewayTest, BackendErrorsMapToStatuses) {
  backend_.fail_with_ = absl::InvalidArgumentError("prompt too long for the KV cache");
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"a"})").status, 400);
  backend_.fail_with_ = absl::UnavailableError("no worker");
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"a"})").status, 503);
  backend_.fail_with_ = absl::OkStatus();
  backend_.error_event_code_ = static_cast<int>(absl::StatusCode::kInvalidArgument);
  HttpResponse r = Call("POST", "/v1/completions", R"({"prompt":"a","stream":true})");
  EXPECT_EQ(r.status, 400);
  EXPECT_FALSE(r.stream);
}

TEST_F(GatewayTest, ApiKeysAreRequiredWhenSet) {
  GatewayOptions o;
  o.api_keys = {"sk-right"};
  Make(o);
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"a"})").status, 401);
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"a"})", "Bearer sk-wrong").status, 401);
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"a"})", "Bearer sk-right").status, 200);
  EXPECT_EQ(Call("GET", "/v1/models", "", "Bearer sk-wrong").status, 401);
  EXPECT_EQ(Call("GET", "/health").status, 200);
  EXPECT_EQ(Call("GET", "/metrics").status, 200);
}

// Keys and prompts stay out of the logs, even at debug level (the gateway's
// per-request line is there); the key check is hashed, so no key is around to
// log by mistake either.
TEST_F(GatewayTest, LogsNeitherKeysNorPrompts) {
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto log = Logger("gateway");
  log->sinks().push_back(sink);
  const spdlog::level::level_enum old_level = log->level();
  log->set_level(spdlog::level::debug);
  GatewayOptions o;
  o.api_keys = {"sk-user-7f3a"};
  o.admin_key = "sk-admin-91c2";
  Make(o);
  EXPECT_EQ(
      Call("POST", "/v1/completions", R"({"prompt":"PROMPT-MARKER-1"})", "Bearer sk-user-7f3a")
          .status,
      200);
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"PROMPT-MARKER-2"})", "Bearer sk-wrong-5e")
                .status,
            401);
  EXPECT_EQ(
      Call("POST", "/v1/chat/completions",
           R"({"messages":[{"role":"user","content":"PROMPT-MARKER-3"}]})", "Bearer sk-user-7f3a")
          .status,
      200);
  EXPECT_EQ(Call("GET", "/admin/cluster", "", "Bearer sk-admin-wrong").status, 401);
  log->flush();
  log->set_level(old_level);
  log->sinks().pop_back();
  const std::string text = captured.str();
  EXPECT_FALSE(text.empty())
      << "the gateway logged nothing at debug level: the check proves nothing";
  for (const char* secret : {"sk-user-7f3a", "sk-wrong-5e", "sk-admin", "PROMPT-MARKER"}) {
    EXPECT_EQ(text.find(secret), std::string::npos) << secret << " in the log:\n" << text;
  }
}

TEST_F(GatewayTest, OverloadGives429AndDisconnectAborts) {
  GatewayOptions o;
  o.admission.max_running = 1;
  o.admission.max_waiting = 0;
  Make(o);
  backend_.hold_ = true;
  std::thread holder_thread;
  HttpResponse held;
  holder_thread = std::thread([&] { held = Call("POST", "/v1/completions", R"({"prompt":"a","stream":true})"); });
  while (backend_.num_held() == 0) absl::SleepFor(absl::Milliseconds(1));
  backend_.TickHeld();  // the first event lets the held request answer
  holder_thread.join();
  ASSERT_TRUE(held.stream);
  HttpResponse refused = Call("POST", "/v1/completions", R"({"prompt":"a"})");
  EXPECT_EQ(refused.status, 429);
  // The client of the held stream goes away at its first write.
  StringWriter gone(0);
  held.stream(gone);
  EXPECT_EQ(backend_.aborted().size(), 1u);
  held = HttpResponse();
  backend_.hold_ = false;
  EXPECT_EQ(Call("POST", "/v1/completions", R"({"prompt":"a"})").status, 200);
}

// The value of an unlabelled sample in the gateway's /metrics text.
double MetricValue(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

// Requests sent from threads, each blocking until its completion; each one
// is tagged by its max_tokens so the order the backend saw them in is known.
class FairnessTest : public GatewayTest {
 protected:
  void Send(const std::string& key, int tag) {
    threads_.emplace_back([this, key, tag] {
      Json body = {{"prompt", "a"}, {"max_tokens", tag}};
      Call("POST", "/v1/completions", body.dump(), "Bearer " + key);
    });
  }
  void WaitFor(const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!done() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
    ASSERT_TRUE(done()) << "timed out";
  }
  double Waiting() { return MetricValue(Call("GET", "/metrics").body, "ferry_requests_waiting"); }
  // Tags in the order the backend received them.
  std::vector<int> Order() {
    std::vector<int> tags;
    for (const v1::GenerateRequest& r : backend_.requests()) tags.push_back(r.params().max_tokens());
    return tags;
  }
  // Finishes the oldest held request (as a client abort would) and waits
  // for the next one to take its slot, if any waits.
  void FinishOne(bool expect_next) {
    const size_t admitted = backend_.requests().size();
    backend_.Abort(backend_.requests()[admitted - static_cast<size_t>(backend_.num_held())].request_id());
    if (expect_next) WaitFor([&] { return backend_.requests().size() == admitted + 1; });
  }
  void TearDown() override {
    backend_.hold_ = false;
    for (const v1::GenerateRequest& r : backend_.requests()) backend_.Abort(r.request_id());
    for (std::thread& t : threads_) t.join();
  }

  std::vector<std::thread> threads_;
};

TEST_F(FairnessTest, AKeyWithALongQueueDoesNotStarveAnother) {
  GatewayOptions o;
  o.api_keys = {"sk-flood", "sk-other"};
  o.admission.max_running = 1;
  o.admission.max_waiting = 16;
  Make(o);
  backend_.hold_ = true;
  Send("sk-flood", 10);
  WaitFor([&] { return backend_.num_held() == 1; });
  for (int tag = 11; tag <= 14; ++tag) {
    Send("sk-flood", tag);
    WaitFor([&, tag] { return Waiting() == tag - 10; });
  }
  Send("sk-other", 20);
  WaitFor([&] { return Waiting() == 5; });
  // One global FIFO would run 11..14 before 20; per-key turns run 20 next.
  FinishOne(/*expect_next=*/true);
  EXPECT_EQ(Order(), (std::vector<int>{10, 20}));
  for (int i = 0; i < 4; ++i) FinishOne(/*expect_next=*/true);
  EXPECT_EQ(Order(), (std::vector<int>{10, 20, 11, 12, 13, 14}));
  FinishOne(/*expect_next=*/false);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  EXPECT_EQ(Waiting(), 0);
}

TEST_F(FairnessTest, AKeyAtItsLimitDoesNotBlockOthers) {
  GatewayOptions o;
  o.api_keys = {"sk-flood", "sk-other"};
  o.admission.max_running = 4;
  o.admission.max_running_per_key = 1;
  o.admission.max_waiting = 16;
  o.admission.max_waiting_per_key = 2;
  Make(o);
  backend_.hold_ = true;
  Send("sk-flood", 10);
  WaitFor([&] { return backend_.num_held() == 1; });
  Send("sk-flood", 11);
  Send("sk-flood", 12);
  WaitFor([&] { return Waiting() == 2; });
  // The flooding key's queue is full: its next request is refused at once,
  // while the other key still runs straight away.
  HttpResponse refused = Call("POST", "/v1/completions", R"({"prompt":"a","max_tokens":13})", "Bearer sk-flood");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_NE(refused.body.find("rate_limit_error"), std::string::npos) << refused.body;
  bool has_retry_after = false;
  for (const auto& [name, value] : refused.headers) has_retry_after |= name == "Retry-After";
  EXPECT_TRUE(has_retry_after);
  Send("sk-other", 20);
  WaitFor([&] { return backend_.num_held() == 2; });
  EXPECT_EQ(Order(), (std::vector<int>{10, 20}));
  EXPECT_EQ(Waiting(), 2);
}

TEST_F(GatewayTest, TokenizeAndDetokenize) {
  Json t = Post("/tokenize", {{"prompt", "Once upon a time"}});
  EXPECT_EQ(t["tokens"], Json::array({1, 403, 407, 261, 378}));
  EXPECT_EQ(t["count"], 5);
  Json d = Post("/detokenize", {{"tokens", Json::array({403, 407, 261, 378})}});
  EXPECT_EQ(d["prompt"], "Once upon a time");
  Post("/detokenize", {{"tokens", Json::array({100000})}}, 400);
  Post("/tokenize", {{"prompt", 5}}, 400);
}

TEST_F(GatewayTest, MetricsCountRequests) {
  Post("/v1/completions", {{"prompt", "a"}, {"max_tokens", 2}});
  Call("GET", "/nope");
  HttpResponse m = Call("GET", "/metrics");
  EXPECT_EQ(m.content_type.rfind("text/plain; version=0.0.4", 0), 0u);
  EXPECT_NE(m.body.find("ferry_http_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("ferry_http_requests_total{endpoint=\"other\",status=\"404\"} 1"), std::string::npos);
  EXPECT_NE(m.body.find("# TYPE ferry_time_to_first_token_seconds histogram"), std::string::npos);
  EXPECT_NE(m.body.find("ferry_generation_tokens_total 2"), std::string::npos);
  EXPECT_NE(m.body.find("ferry_time_per_output_token_seconds_count{endpoint=\"/v1/completions\"} 1"),
            std::string::npos);
}

}  // namespace
}  // namespace ferry
