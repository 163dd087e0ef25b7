#include "engine/service/worker_service.h"

#include <atomic>
#include <deque>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/logging.h"

namespace ferry {
namespace {

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < bytes; ++i) absl::StrAppendFormat(&out, "%02x", rd() & 0xff);
  return out;
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return v1::FINISH_REASON_UNSPECIFIED;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kAbort: return v1::FINISH_REASON_ABORT;
    case FinishReason::kError: return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// One Generate stream. Events come from the engine thread; writes go out one
// at a time (gRPC allows one outstanding write), the rest wait in a queue.
// User reactions are never run inline by gRPC, so holding `mu_` while
// starting a write or finishing is safe.
class GenerateStream final : public grpc::ServerWriteReactor<v1::TokenEvent> {
 public:
  GenerateStream(Engine* engine, std::string request_id, int num_samples)
      : engine_(engine), request_id_(std::move(request_id)), unfinished_(num_samples) {}

  void Start(GenerateInput input) {
    // The sink keeps this stream alive through a shared handle that OnDone
    // clears, so late events after the RPC ended are dropped, not written.
    auto self = std::make_shared<Handle>(this);
    handle_ = self;
    absl::Status s = engine_->Submit(std::move(input), [self](EngineEvent ev) {
      absl::MutexLock lock(&self->mu);
      if (self->stream != nullptr) self->stream->PushLocked(ToTokenEvent(ev), ev.finish != FinishReason::kNone);
    });
    if (!s.ok()) {
      absl::MutexLock lock(&handle_->mu);
      FinishOnceLocked(ToGrpcStatus(s));
    }
  }

  // Ends the stream at once with `status` (a request that cannot be run).
  void Fail(const grpc::Status& status) {
    handle_ = std::make_shared<Handle>(this);
    absl::MutexLock lock(&handle_->mu);
    FinishOnceLocked(status);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&handle_->mu);
    writing_ = false;
    if (!ok) {
      // The client is gone: stop the request and free its blocks.
      engine_->Abort(request_id_);
      FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    PumpLocked();
  }

  void OnCancel() override {
    engine_->Abort(request_id_);
    absl::MutexLock lock(&handle_->mu);
    FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&handle_->mu);
      handle_->stream = nullptr;
    }
    delete this;
  }

 private:
  struct Handle {
    explicit Handle(GenerateStream* s) : stream(s) {}
    absl::Mutex mu;
    GenerateStream* stream;
  };

  void PushLocked(v1::TokenEvent event, bool last_of_sample) {
    if (finished_) return;
    if (last_of_sample) --unfinished_;
    queue_.push_back(std::move(event));
    PumpLocked();
  }

  void PumpLocked() {
    if (writing_ || finished_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      StartWrite(&current_);
      return;
    }
    if (unfinished_ <= 0) FinishOnceLocked(grpc::Status::OK);
  }

  void FinishOnceLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  Engine* engine_;
  std::string request_id_;
  std::shared_ptr<Handle> handle_;
  std::deque<v1::TokenEvent> queue_;
  v1::TokenEvent current_;
  bool writing_ = false;
  bool finished_ = false;
  int unfinished_;
};

std::atomic<uint64_t> g_request_counter{0};

}  // namespace

absl::StatusOr<GenerateInput> ToGenerateInput(const v1::GenerateRequest& r, const Model& model) {
  GenerateInput in;
  in.request_id = r.request_id().empty()
                      ? absl::StrCat("req-", RandomHex(6), "-", g_request_counter.fetch_add(1))
                      : r.request_id();
  in.prompt_ids.assign(r.prompt_ids().begin(), r.prompt_ids().end());
  if (in.prompt_ids.empty() && !r.prompt().empty()) {
    in.prompt_ids = model.tokenizer().Encode(r.prompt(), model.tokenizer().add_bos(), true);
  }
  const v1::SamplingParams& p = r.params();
  SamplingParams& s = in.params;
  s.temperature = p.temperature();
  s.top_p = p.top_p() == 0 ? 1.0f : p.top_p();
  s.top_k = p.top_k() < 0 ? 0 : p.top_k();
  s.min_p = p.min_p();
  s.repetition_penalty = p.repetition_penalty() == 0 ? 1.0f : p.repetition_penalty();
  s.frequency_penalty = p.frequency_penalty();
  s.presence_penalty = p.presence_penalty();
  if (p.has_seed()) s.seed = p.seed();
  for (const auto& [id, bias] : p.logit_bias()) s.logit_bias.emplace_back(id, bias);
  std::sort(s.logit_bias.begin(), s.logit_bias.end());
  s.max_tokens = p.max_tokens() == 0 ? 16 : p.max_tokens();
  s.min_tokens = p.min_tokens();
  s.stop.assign(p.stop().begin(), p.stop().end());
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  s.ignore_eos = p.ignore_eos();
  s.logprobs = p.has_logprobs() ? p.logprobs() : -1;
  s.n = p.n() == 0 ? 1 : p.n();
  in.priority = r.priority();
  return in;
}

v1::TokenEvent ToTokenEvent(const EngineEvent& ev) {
  v1::TokenEvent out;
  out.set_request_id(ev.request_id);
  out.set_sample_index(ev.sample_index);
  for (int32_t id : ev.token_ids) out.add_token_ids(id);
  out.set_text(ev.text);
  for (const SampledToken& t : ev.logprobs) {
    v1::TokenLogprob* lp = out.add_logprobs();
    lp->set_token_id(t.id);
    lp->set_logprob(t.logprob);
    for (const auto& [id, logprob] : t.top) {
      lp->add_top_ids(id);
      lp->add_top_logprobs(logprob);
    }
  }
  out.set_finish_reason(ToProto(ev.finish));
  if (ev.finish != FinishReason::kNone) {
    out.mutable_usage()->set_prompt_tokens(ev.prompt_tokens);
    out.mutable_usage()->set_completion_tokens(ev.completion_tokens);
    out.mutable_usage()->set_cached_prompt_tokens(ev.cached_prompt_tokens);
    out.set_stop_reason(ev.stop_reason);
    out.set_stop_token(ev.stop_token);
  }
  out.set_error(ev.error);
  return out;
}

WorkerService::WorkerService(Engine* engine, const WorkerServiceOptions& options)
    : engine_(engine), options_(options), incarnation_id_(RandomHex(8)) {}

grpc::ServerWriteReactor<v1::TokenEvent>* WorkerService::Generate(grpc::CallbackServerContext* context,
                                                                  const v1::GenerateRequest* request) {
  auto input = ToGenerateInput(*request, engine_->model());
  if (!input.ok()) {
    auto* s = new GenerateStream(engine_, request->request_id(), 0);
    s->Fail(ToGrpcStatus(input.status()));
    return s;
  }
  Logger("worker")->debug("req={} generate: {} prompt tokens", input->request_id, input->prompt_ids.size());
  auto* stream = new GenerateStream(engine_, input->request_id, input->params.n);
  stream->Start(std::move(*input));
  return stream;
}

grpc::ServerUnaryReactor* WorkerService::Abort(grpc::CallbackServerContext* context,
                                               const v1::AbortRequest* request,
                                               v1::AbortResponse* response) {
  engine_->Abort(request->request_id());
  response->set_found(true);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Stats(grpc::CallbackServerContext* context,
                                               const v1::StatsRequest* request,
                                               v1::StatsResponse* response) {
  EngineStats s = engine_->Stats();
  v1::LoadReport* load = response->mutable_load();
  load->set_blocks_free(s.blocks_free);
  load->set_blocks_total(s.blocks_total);
  load->set_running_requests(s.running);
  load->set_waiting_requests(s.waiting);
  load->set_blocks_needed_waiting(s.blocks_needed_waiting);
  load->set_tokens_per_second(s.tokens_per_second);
  load->set_cached_blocks(s.blocks_cached);
  response->set_prefix_cache_hit_rate(s.prefix_cache_hit_rate);
  response->set_blocks_used(s.blocks_used);
  response->set_blocks_cached(s.blocks_cached);
  response->set_model_id(engine_->model().id());
  response->set_role(options_.role);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Health(grpc::CallbackServerContext* context,
                                                const v1::HealthRequest* request,
                                                v1::HealthResponse* response) {
  response->set_ready(true);
  response->set_incarnation_id(incarnation_id_);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace ferry
