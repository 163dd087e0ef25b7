#include "benchmarks/loadgen/load_runner.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "benchmarks/loadgen/sse.h"
#include "common/progress.h"

namespace ferry::loadgen {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string ClientErrorClass(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
    case httplib::Error::ConnectionTimeout:
      return "connection";
    case httplib::Error::Read:
      return "read";  // reset by the server, or the read timeout
    case httplib::Error::Write:
      return "write";
    default:
      return "client_" + httplib::to_string(e);
  }
}

// Sends one request on `client` and measures it.
RequestResult SendOne(httplib::Client& client, const std::string& path, const TargetOptions& target,
                      const BenchRequest& request, Clock::time_point run_start, bool keep_output) {
  RequestResult r;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = RequestBody(target, request).dump();
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  if (!target.api_key.empty()) req.set_header("Authorization", "Bearer " + target.api_key);

  const Clock::time_point sent = Clock::now();
  const Clock::time_point deadline = sent + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(target.timeout_s));
  r.start_s = Seconds(sent - run_start);
  int status = -1;
  bool timed_out = false, done = false, got_output = false;
  int chunks = 0, usage_tokens = -1;
  Clock::time_point last = sent;
  std::string body_head, stream_error;
  SseParser parser;
  auto on_event = [&](std::string_view data) {
    const Clock::time_point now = Clock::now();
    StreamChunk c = ParseChunk(data);
    if (c.done) done = true;
    if (!c.error.empty() && stream_error.empty()) stream_error = c.error;
    if (c.completion_tokens >= 0) usage_tokens = c.completion_tokens;
    if (c.prompt_tokens >= 0) r.prompt_tokens = c.prompt_tokens;
    if (r.response_id.empty() && !c.id.empty()) r.response_id = c.id;
    if (!c.has_output) return;
    if (keep_output) r.output_chunks.push_back(std::move(c.text));
    if (!got_output) {
      r.ttft_s = Seconds(now - sent);
      got_output = true;
    } else {
      r.itl_s.push_back(Seconds(now - last));
    }
    last = now;
    ++chunks;
  };
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (Clock::now() > deadline) {
      timed_out = true;
      return false;
    }
    if (status != 200) {
      body_head.append(data, std::min(len, 300 - std::min<size_t>(300, body_head.size())));
      return true;
    }
    parser.Feed(std::string_view(data, len), on_event);
    return true;
  };
  httplib::Result res = client.send(req);
  if (status == 200) parser.Finish(on_event);
  r.e2e_s = Seconds(Clock::now() - sent);
  if (timed_out) {
    r.error = "timeout";
  } else if (!res) {
    r.error = ClientErrorClass(res.error());
    r.error_detail = httplib::to_string(res.error());
  } else if (status != 200) {
    r.error = absl::StrCat("http_", status);
    r.error_detail = body_head;
  } else if (!stream_error.empty()) {
    r.error = "stream_error";
    r.error_detail = stream_error;
  } else if (!done) {
    r.error = "incomplete_stream";
  } else if (!got_output) {
    r.error = "no_output";
  } else {
    r.ok = true;
  }
  r.output_tokens = usage_tokens >= 0 ? usage_tokens : chunks;
  r.requested_output_tokens = request.output_tokens;
  return r;
}

}  // namespace

absl::StatusOr<std::string> EndpointPath(const TargetOptions& target, std::string* base) {
  size_t scheme = target.url.find("://");
  if (scheme == std::string::npos || target.url.size() == scheme + 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("--url must look like http://HOST:PORT, got '", target.url, "'"));
  }
  size_t slash = target.url.find('/', scheme + 3);
  *base = target.url.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : target.url.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (!absl::EndsWith(prefix, "/v1")) prefix += "/v1";
  if (target.endpoint == "completions") return prefix + "/completions";
  if (target.endpoint == "chat") return prefix + "/chat/completions";
  return absl::InvalidArgumentError(
      absl::StrCat("--endpoint must be completions or chat, got '", target.endpoint, "'"));
}

Json RequestBody(const TargetOptions& target, const BenchRequest& request) {
  Json body;
  if (!target.model.empty()) body["model"] = target.model;
  if (target.endpoint == "chat") {
    body["messages"] = Json::array({{{"role", "user"}, {"content", request.prompt}}});
  } else {
    body["prompt"] = request.prompt;
  }
  body["max_tokens"] = request.output_tokens;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  if (target.ignore_eos) body["ignore_eos"] = true;
  if (target.temperature) body["temperature"] = *target.temperature;
  return body;
}

StreamChunk ParseChunk(std::string_view data) {
  StreamChunk c;
  if (data == "[DONE]") {
    c.done = true;
    return c;
  }
  Json j = Json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    c.error = "malformed chunk";
    return c;
  }
  if (j.contains("error")) {
    const Json& e = j["error"];
    c.error = e.is_object() && e.contains("message") && e["message"].is_string()
                  ? e["message"].get<std::string>()
                  : e.dump();
    return c;
  }
  if (j.contains("id") && j["id"].is_string()) c.id = j["id"].get<std::string>();
  if (j.contains("usage") && j["usage"].is_object()) {
    const Json& u = j["usage"];
    if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer()) {
      c.completion_tokens = u["completion_tokens"].get<int>();
    }
    if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer()) {
      c.prompt_tokens = u["prompt_tokens"].get<int>();
    }
  }
  if (j.contains("choices") && j["choices"].is_array()) {
    for (const Json& choice : j["choices"]) {
      if (!choice.is_object()) continue;
      auto append = [&c](const Json& obj, const char* key) {
        if (!obj.is_object() || !obj.contains(key) || !obj[key].is_string()) return;
        const std::string& text = obj[key].get_ref<const std::string&>();
        if (text.empty()) return;
        c.has_output = true;
        c.text += text;
      };
      append(choice, "text");
      if (choice.contains("delta")) {
        append(choice["delta"], "reasoning_content");
        append(choice["delta"], "content");
      }
    }
  }
  return c;
}

absl::StatusOr<LoadRun> RunLoad(const TargetOptions& target,
                                const std::vector<BenchRequest>& requests,
                                const std::vector<double>& arrivals, const LoadOptions& options) {
  if (arrivals.size() != requests.size()) {
    return absl::InvalidArgumentError("one arrival time per request is needed");
  }
  std::string base;
  absl::StatusOr<std::string> path = EndpointPath(target, &base);
  if (!path.ok()) return path.status();
  {
    httplib::Client probe(base);  // rejects a URL httplib cannot use before any thread starts
    if (!probe.is_valid())
      return absl::InvalidArgumentError(absl::StrCat("--url '", target.url, "' is not usable"));
  }
  LoadRun run;
  run.results.resize(requests.size());
  const int n = static_cast<int>(requests.size());
  int num_threads = std::min(n, std::max(1, options.max_threads));
  if (options.max_concurrency > 0) num_threads = std::min(num_threads, options.max_concurrency);
  std::atomic<int> next{0};
  std::atomic<int> finished{0};
  const Clock::time_point start = options.start.value_or(Clock::now());
  run.start = start;
  std::vector<std::thread> threads;
  threads.reserve(num_threads);
  for (int t = 0; t < num_threads; ++t) {
    threads.emplace_back([&] {
      httplib::Client client(base);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_connection_timeout(10, 0);
      const auto read_timeout = static_cast<time_t>(std::max(1.0, target.timeout_s));
      client.set_read_timeout(read_timeout, 0);
      client.set_write_timeout(read_timeout, 0);
      for (int i; (i = next.fetch_add(1)) < n;) {
        std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(arrivals[i])));
        RequestResult r = SendOne(client, *path, target, requests[i], start, options.keep_output);
        r.scheduled_s = arrivals[i];
        run.results[i] = std::move(r);
        finished.fetch_add(1);
      }
    });
  }
  ProgressBar bar("bench", n, options.progress && ProgressBar::StderrIsTerminal());
  while (finished.load() < n) {
    bar.Update(finished.load());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (std::thread& t : threads) t.join();
  bar.Update(n);
  bar.Finish();
  double first_send = n > 0 ? run.results[0].start_s : 0, last_end = 0;
  for (const RequestResult& r : run.results) {
    first_send = std::min(first_send, r.start_s);
    last_end = std::max(last_end, r.start_s + r.e2e_s);
  }
  run.duration_s = std::max(0.0, last_end - first_send);
  return run;
}

}  // namespace ferry::loadgen
