#include "tests/fakes/fake_worker.h"

#include <grpcpp/server_builder.h>

#include <atomic>
#include <deque>
#include <list>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace ferry::testing {
namespace {

std::atomic<uint64_t> g_incarnations{1};

// A Generate stream: events queue up and go out one write at a time. The
// worker holds a shared handle; OnDone clears the reactor pointer.
class FakeStream;
struct StreamHandle {
  absl::Mutex mu;
  FakeStream* stream = nullptr;
};

class FakeStream final : public grpc::ServerWriteReactor<v1::TokenEvent> {
 public:
  FakeStream(std::shared_ptr<StreamHandle> handle, std::function<void()> on_cancel)
      : handle_(std::move(handle)), on_cancel_(std::move(on_cancel)) {
    handle_->stream = this;
  }
  // Both under handle->mu.
  void PushLocked(v1::TokenEvent ev) {
    queue_.push_back(std::move(ev));
    PumpLocked();
  }
  void FinishLocked(grpc::Status s) {
    finish_ = true;
    status_ = std::move(s);
    PumpLocked();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&handle_->mu);
    writing_ = false;
    if (!ok) {
      queue_.clear();
      finish_ = true;
    }
    PumpLocked();
  }
  void OnCancel() override {
    on_cancel_();
    absl::MutexLock lock(&handle_->mu);
    queue_.clear();
    finish_ = true;
    status_ = grpc::Status::CANCELLED;
    PumpLocked();
  }
  void OnDone() override {
    {
      absl::MutexLock lock(&handle_->mu);
      handle_->stream = nullptr;
    }
    delete this;
  }

 private:
  void PumpLocked() {
    if (writing_ || finished_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      StartWrite(&current_);
    } else if (finish_) {
      finished_ = true;
      Finish(status_);
    }
  }
  std::shared_ptr<StreamHandle> handle_;
  std::function<void()> on_cancel_;
  std::deque<v1::TokenEvent> queue_;
  v1::TokenEvent current_;
  bool writing_ = false, finish_ = false, finished_ = false;
  grpc::Status status_;
};

}  // namespace

class FakeWorker::Service final : public v1::Worker::CallbackService {
 public:
  explicit Service(const FakeWorkerOptions& options) : options_(options) {
    ticker_ = std::thread([this] { Tick(); });
  }
  ~Service() override { Stop(); }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (ticker_.joinable()) ticker_.join();
    for (std::thread& t : helpers_) t.join();
    helpers_.clear();
  }

  struct Seq {
    std::string request_id;
    int sample_index = 0;
    uint64_t seed = 0;
    std::vector<int32_t> prompt;
    std::vector<int32_t> output;
    int max_tokens = 16;
    bool paused = false;
    bool done = false;  // finished while nobody was attached
    std::shared_ptr<StreamHandle> stream;  // null: migrated in, not attached yet
    std::vector<v1::TokenEvent> buffered;
    v1::SamplingParams params;
  };

  grpc::ServerWriteReactor<v1::TokenEvent>* Generate(grpc::CallbackServerContext* context,
                                                     const v1::GenerateRequest* request) override {
    auto handle = std::make_shared<StreamHandle>();
    const std::string id = request->request_id();
    auto* stream = new FakeStream(handle, [this, handle] { DropStream(handle); });
    absl::MutexLock lock(&mu_);
    absl::MutexLock slock(&handle->mu);
    ++generate_calls_;
    if (request->attach()) {
      ++attach_calls_;
      for (auto it = seqs_.begin(); it != seqs_.end(); ++it) {
        if (it->request_id != id || it->stream != nullptr) continue;
        it->stream = handle;
        for (v1::TokenEvent& ev : it->buffered) stream->PushLocked(std::move(ev));
        it->buffered.clear();
        if (it->done) {
          stream->FinishLocked(grpc::Status::OK);
          seqs_.erase(it);
        }
        return stream;
      }
      stream->FinishLocked(grpc::Status(grpc::StatusCode::NOT_FOUND, "nothing to attach to"));
      return stream;
    }
    if (request->params().max_tokens() < 0) {
      stream->FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "max_tokens must not be negative"));
      return stream;
    }
    for (const Seq& s : seqs_) {
      if (s.request_id == id) {
        stream->FinishLocked(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "request id in use"));
        return stream;
      }
    }
    auto make = [&](int sample) {
      Seq s;
      s.request_id = id;
      s.sample_index = sample;
      s.seed = request->params().seed();
      s.params = request->params();
      s.prompt.assign(request->prompt_ids().begin(), request->prompt_ids().end());
      s.max_tokens = request->params().max_tokens() == 0 ? 16 : request->params().max_tokens();
      s.stream = handle;
      return s;
    };
    if (request->has_resume()) {
      ++resume_calls_;
      Seq s = make(request->resume().sample_index());
      s.output.assign(request->resume().output_ids().begin(), request->resume().output_ids().end());
      seqs_.push_back(std::move(s));
    } else {
      for (int i = 0; i < std::max(1, request->params().n()); ++i) seqs_.push_back(make(i));
    }
    return stream;
  }

  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* context, const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override {
    absl::MutexLock lock(&mu_);
    bool found = false;
    for (auto it = seqs_.begin(); it != seqs_.end();) {
      if (it->request_id == request->request_id()) {
        found = true;
        v1::TokenEvent ev = EventFor(*it, {});
        ev.set_finish_reason(v1::FINISH_REASON_ABORT);
        EmitLocked(*it, std::move(ev), /*last=*/true);
        it = seqs_.erase(it);
      } else {
        ++it;
      }
    }
    response->set_found(found);
    auto* r = context->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }

  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context, const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override {
    *response->mutable_load() = Load();
    auto* r = context->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }

  grpc::ServerUnaryReactor* Health(grpc::CallbackServerContext* context, const v1::HealthRequest* request,
                                   v1::HealthResponse* response) override {
    response->set_ready(true);
    auto* r = context->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }

  grpc::ServerReadReactor<v1::KvChunk>* ReceiveKv(grpc::CallbackServerContext* context,
                                                  v1::ReceiveKvResponse* response) override {
    class Reader final : public grpc::ServerReadReactor<v1::KvChunk> {
     public:
      Reader(Service* service, v1::ReceiveKvResponse* response) : service_(service), response_(response) {
        StartRead(&chunk_);
      }
      void OnReadDone(bool ok) override {
        if (ok && !chunk_.last()) {
          StartRead(&chunk_);
          return;
        }
        if (ok) service_->Accept(chunk_.state(), response_);
        Finish(grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      Service* service_;
      v1::ReceiveKvResponse* response_;
      v1::KvChunk chunk_;
    };
    return new Reader(this, response);
  }

  grpc::ServerUnaryReactor* MigrateOut(grpc::CallbackServerContext* context, const v1::MigrateOutRequest* request,
                                       v1::MigrateOutResponse* response) override {
    auto* reactor = context->DefaultReactor();
    absl::MutexLock lock(&mu_);
    Seq* seq = nullptr;
    int count = 0;
    for (Seq& s : seqs_) {
      if (s.request_id == request->request_id()) {
        seq = &s;
        ++count;
      }
    }
    if (seq == nullptr || count != 1 || seq->paused || stop_) {
      response->set_migrated(false);
      response->set_error(seq == nullptr ? "request not running here" : "request cannot migrate now");
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    seq->paused = true;
    helpers_.emplace_back([this, req = *request, response, reactor] { RunMigration(req, response, reactor); });
    return reactor;
  }

  v1::LoadReport Load() const {
    absl::MutexLock lock(&mu_);
    v1::LoadReport load;
    int64_t used = 0;
    for (const Seq& s : seqs_) {
      used += (static_cast<int64_t>(s.prompt.size() + s.output.size()) + options_.block_size - 1) / options_.block_size;
    }
    load.set_blocks_total(options_.blocks_total);
    load.set_blocks_free(options_.blocks_total - used);
    load.set_running_requests(static_cast<int>(seqs_.size()));
    return load;
  }

  mutable absl::Mutex mu_;
  FakeWorkerOptions options_ ABSL_GUARDED_BY(mu_);
  std::list<Seq> seqs_ ABSL_GUARDED_BY(mu_);
  int64_t generate_calls_ = 0, resume_calls_ = 0, attach_calls_ = 0, migrations_out_ = 0;

 private:
  v1::TokenEvent EventFor(const Seq& s, const std::vector<int32_t>& tokens) const {
    v1::TokenEvent ev;
    ev.set_request_id(s.request_id);
    ev.set_sample_index(s.sample_index);
    ev.set_seq(s.output.size() - tokens.size());
    std::string text;
    for (int32_t t : tokens) {
      ev.add_token_ids(t);
      text += FakeWorker::TextOf(t);
    }
    ev.set_text(text);
    return ev;
  }

  // Sends `ev` to the sample's stream (or buffers it before an attach).
  void EmitLocked(Seq& s, v1::TokenEvent ev, bool last) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (s.stream == nullptr) {
      s.buffered.push_back(std::move(ev));
      return;
    }
    absl::MutexLock slock(&s.stream->mu);
    FakeStream* stream = s.stream->stream;
    if (stream == nullptr) return;
    stream->PushLocked(std::move(ev));
    if (!last) return;
    for (const Seq& o : seqs_) {
      if (&o != &s && o.stream == s.stream) return;  // others still use it
    }
    stream->FinishLocked(grpc::Status::OK);
  }

  void Tick() {
    while (true) {
      absl::SleepFor(options_.step);
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      for (auto it = seqs_.begin(); it != seqs_.end();) {
        Seq& s = *it;
        if (s.paused) {
          ++it;
          continue;
        }
        const int32_t tok = FakeWorker::TokenAt(s.seed, s.sample_index, s.output.size());
        s.output.push_back(tok);
        v1::TokenEvent ev = EventFor(s, {tok});
        const bool last = static_cast<int>(s.output.size()) >= s.max_tokens;
        if (last) {
          ev.set_finish_reason(v1::FINISH_REASON_LENGTH);
          ev.mutable_usage()->set_prompt_tokens(s.prompt.size());
          ev.mutable_usage()->set_completion_tokens(s.output.size());
        }
        EmitLocked(s, std::move(ev), last);
        if (last && s.stream != nullptr) {
          it = seqs_.erase(it);
        } else {
          if (last) s.paused = s.done = true;
          ++it;
        }
      }
    }
  }

  void DropStream(const std::shared_ptr<StreamHandle>& handle) {
    absl::MutexLock lock(&mu_);
    seqs_.remove_if([&](const Seq& s) { return s.stream == handle; });
  }

  void Accept(const v1::RequestState& state, v1::ReceiveKvResponse* response) {
    absl::MutexLock lock(&mu_);
    if (options_.refuse_migrations || stop_) {
      response->set_accepted(false);
      response->set_error("destination refuses migrations");
      return;
    }
    Seq s;
    s.request_id = state.request_id();
    s.sample_index = state.sample_index();
    s.seed = state.params().seed();
    s.params = state.params();
    s.max_tokens = state.params().max_tokens() == 0 ? 16 : state.params().max_tokens();
    s.prompt.assign(state.prompt_ids().begin(), state.prompt_ids().end());
    s.output.assign(state.output_ids().begin(), state.output_ids().end());
    seqs_.push_back(std::move(s));
    response->set_accepted(true);
  }

  // Source side: pause, hand the state over, then end the sample here with
  // MIGRATED (carrying the token produced while pausing).
  void RunMigration(v1::MigrateOutRequest req, v1::MigrateOutResponse* response,
                    grpc::ServerUnaryReactor* reactor) {
    const absl::Time start = absl::Now();
    v1::KvChunk chunk;
    {
      absl::MutexLock lock(&mu_);
      for (Seq& s : seqs_) {
        if (s.request_id != req.request_id()) continue;
        // One last token on the source, relayed with the MIGRATED event.
        s.output.push_back(FakeWorker::TokenAt(s.seed, s.sample_index, s.output.size()));
        v1::RequestState* st = chunk.mutable_state();
        st->set_request_id(s.request_id);
        st->set_sample_index(s.sample_index);
        for (int32_t t : s.prompt) st->add_prompt_ids(t);
        for (int32_t t : s.output) st->add_output_ids(t);
        *st->mutable_params() = s.params;
      }
    }
    chunk.set_request_id(req.request_id());
    chunk.set_last(true);
    auto stub = v1::Worker::NewStub(grpc::CreateChannel(req.destination(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ReceiveKvResponse rr;
    auto writer = stub->ReceiveKv(&ctx, &rr);
    writer->Write(chunk);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    const bool ok = status.ok() && rr.accepted();

    absl::MutexLock lock(&mu_);
    for (auto it = seqs_.begin(); it != seqs_.end(); ++it) {
      if (it->request_id != req.request_id()) continue;
      if (!ok) {
        it->output.pop_back();  // the token goes again when it resumes here
        it->paused = false;
        break;
      }
      v1::TokenEvent ev = EventFor(*it, {it->output.back()});
      ev.set_finish_reason(v1::FINISH_REASON_MIGRATED);
      ev.set_migrated_to(req.destination());
      EmitLocked(*it, std::move(ev), /*last=*/true);
      seqs_.erase(it);
      ++migrations_out_;
      break;
    }
    response->set_migrated(ok);
    if (!ok) response->set_error(status.ok() ? rr.error() : status.error_message());
    response->set_downtime_micros(absl::ToInt64Microseconds(absl::Now() - start));
    reactor->Finish(grpc::Status::OK);
  }

  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread ticker_;
  std::vector<std::thread> helpers_;
};

std::unique_ptr<FakeWorker> FakeWorker::Start(const FakeWorkerOptions& options) {
  std::unique_ptr<FakeWorker> w(new FakeWorker());
  w->options_ = options;
  w->incarnation_id_ = absl::StrCat("fake-", g_incarnations.fetch_add(1));
  w->service_ = std::make_unique<Service>(options);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(w->service_.get());
  w->server_ = builder.BuildAndStart();
  w->address_ = absl::StrCat("127.0.0.1:", port);
  return w;
}

FakeWorker::~FakeWorker() { Die(); }

void FakeWorker::Die() {
  if (dead_) return;
  dead_ = true;
  {
    absl::MutexLock lock(&service_->mu_);
    service_->seqs_.clear();
  }
  server_->Shutdown(std::chrono::system_clock::now());
  service_->Stop();
  server_->Wait();
}

void FakeWorker::set_refuse_migrations(bool refuse) {
  absl::MutexLock lock(&service_->mu_);
  service_->options_.refuse_migrations = refuse;
}

v1::LoadReport FakeWorker::Load() const { return service_->Load(); }

int FakeWorker::num_active() const {
  absl::MutexLock lock(&service_->mu_);
  return static_cast<int>(service_->seqs_.size());
}

#define FAKE_COUNTER(name)                      \
  int64_t FakeWorker::name() const {            \
    absl::MutexLock lock(&service_->mu_);       \
    return service_->name##_;                   \
  }
FAKE_COUNTER(generate_calls)
FAKE_COUNTER(resume_calls)
FAKE_COUNTER(attach_calls)
FAKE_COUNTER(migrations_out)
#undef FAKE_COUNTER

int32_t FakeWorker::TokenAt(uint64_t seed, int sample_index, int64_t pos) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(sample_index) * 0xBF58476D1CE4E5B9ULL +
               static_cast<uint64_t>(pos) * 0x94D049BB133111EBULL;
  x ^= x >> 31;
  x *= 0xD6E8FEB86659FD93ULL;
  x ^= x >> 29;
  return static_cast<int32_t>(3 + x % 997);
}

std::string FakeWorker::TextOf(int32_t token) { return absl::StrCat("t", token, " "); }

}  // namespace ferry::testing
