// A Worker.Generate client for tests: reads a stream to its end, with a
// hook once so many tokens have come (to migrate or abort mid-stream).
#pragma once

#include <grpcpp/client_context.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "ferry/v1/worker.grpc.pb.h"

namespace ferry::testing {

struct GenerateOutput {
  std::vector<int32_t> tokens;
  std::string text;
  v1::TokenEvent last;  // the event with the finish reason
  grpc::Status status;
};

// Reads a Generate stream to its end (60 s at most), calling `at` once
// `after_n` tokens have arrived.
inline GenerateOutput ReadStream(v1::Worker::Stub& stub, const v1::GenerateRequest& req, int after_n = -1,
                                 const std::function<void()>& at = nullptr) {
  GenerateOutput out;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub.Generate(&ctx, req);
  v1::TokenEvent ev;
  bool called = false;
  while (reader->Read(&ev)) {
    out.tokens.insert(out.tokens.end(), ev.token_ids().begin(), ev.token_ids().end());
    out.text += ev.text();
    if (ev.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) out.last = ev;
    if (!called && at && static_cast<int>(out.tokens.size()) >= after_n) {
      called = true;
      at();
    }
  }
  out.status = reader->Finish();
  return out;
}

// "Once upon a time", `max_tokens` tokens whatever the model says (seed 11).
inline v1::GenerateRequest StoryRequest(const std::string& id, int max_tokens, float temperature = 0) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  r.set_prompt("Once upon a time");
  r.mutable_params()->set_max_tokens(max_tokens);
  r.mutable_params()->set_temperature(temperature);
  r.mutable_params()->set_seed(11);
  r.mutable_params()->set_ignore_eos(true);
  return r;
}

}  // namespace ferry::testing
