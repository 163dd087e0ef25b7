// A fake GenerateBackend for gateway tests: it answers every request at once
// with `tokens_per_sample` tokens (or up to max_tokens), each token id 3..,
// text "t<i> ", with logprobs when asked, or holds requests open until
// Abort when `hold` is set. It records what it was sent.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/generate_backend.h"

namespace ferry::testing {

class FakeBackend : public GenerateBackend {
 public:
  absl::Status Generate(const v1::GenerateRequest& request, EventCallback on_event) override {
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(request);
      if (!fail_with_.ok()) return fail_with_;
      if (hold_) {
        held_[request.request_id()] = {request, on_event};
        return absl::OkStatus();
      }
    }
    if (error_event_code_ != 0) {
      for (int s = 0; s < Samples(request); ++s) {
        v1::TokenEvent ev;
        ev.set_request_id(request.request_id());
        ev.set_sample_index(s);
        ev.set_finish_reason(v1::FINISH_REASON_ERROR);
        ev.set_error("fake failure");
        ev.set_error_code(error_event_code_);
        on_event(ev);
      }
      return absl::OkStatus();
    }
    Emit(request, on_event);
    return absl::OkStatus();
  }

  void Abort(const std::string& request_id) override {
    std::pair<v1::GenerateRequest, EventCallback> held;
    {
      absl::MutexLock lock(&mu_);
      aborted_.push_back(request_id);
      auto it = held_.find(request_id);
      if (it == held_.end()) return;
      held = it->second;
      held_.erase(it);
    }
    for (int s = 0; s < Samples(held.first); ++s) {
      v1::TokenEvent ev;
      ev.set_request_id(request_id);
      ev.set_sample_index(s);
      ev.set_finish_reason(v1::FINISH_REASON_ABORT);
      held.second(ev);
    }
  }

  bool Ready() override { return ready_; }
  ClusterAdmin* cluster_admin() override { return cluster_admin_; }

  // Sends one token to every held request (without finishing them).
  void TickHeld() {
    std::vector<std::pair<v1::GenerateRequest, EventCallback>> held;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [id, h] : held_) held.push_back(h);
    }
    for (auto& [req, cb] : held) {
      v1::TokenEvent ev;
      ev.set_request_id(req.request_id());
      ev.add_token_ids(3);
      ev.set_text("t0 ");
      cb(ev);
    }
  }

  std::vector<v1::GenerateRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  std::vector<std::string> aborted() {
    absl::MutexLock lock(&mu_);
    return aborted_;
  }
  size_t num_held() {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }

  bool ready_ = true;
  bool hold_ = false;
  int tokens_per_sample_ = 4;
  // When set, the text of each token in turn (instead of "t<i> ").
  std::vector<std::string> script_;
  std::string stop_reason_;  // when set, samples end on this stop string
  int error_event_code_ = 0;
  absl::Status fail_with_;
  ClusterAdmin* cluster_admin_ = nullptr;  // null: a single-worker backend

 private:
  static int Samples(const v1::GenerateRequest& r) { return r.params().n() > 0 ? r.params().n() : 1; }

 public:
  // The k-th alternative to prompt token j: on even positions the prompt's
  // own token comes first (so it is also among the best).
  static int32_t PromptAlternative(const v1::GenerateRequest& r, int j, int k) {
    return j % 2 == 0 && k == 0 ? r.prompt_ids(j) : 10 + k;
  }

 private:
  void Emit(const v1::GenerateRequest& request, const EventCallback& on_event) {
    int tokens = std::min(script_.empty() ? tokens_per_sample_ : static_cast<int>(script_.size()),
                          request.params().max_tokens());
    for (int s = 0; s < Samples(request); ++s) {
      for (int i = 0; i < tokens; ++i) {
        v1::TokenEvent ev;
        ev.set_request_id(request.request_id());
        ev.set_sample_index(s);
        ev.add_token_ids(3 + i);
        ev.set_text(script_.empty() ? "t" + std::to_string(i) + " "
                                    : script_[static_cast<size_t>(i)]);
        if (request.params().has_logprobs()) {
          v1::TokenLogprob* lp = ev.add_logprobs();
          lp->set_token_id(3 + i);
          lp->set_logprob(-0.5f);
          for (int k = 0; k < request.params().logprobs(); ++k) {
            lp->add_top_ids(3 + k);
            lp->add_top_logprobs(-0.5f - k);
          }
        }
        // Prompt token j scores -j / 10 (from the second on) at rank j;
        // its k alternatives are PromptAlternative(j, 0..k-1).
        if (i == 0 && request.params().has_prompt_logprobs()) {
          for (int j = 1; j < request.prompt_ids_size(); ++j) {
            v1::TokenLogprob* lp = ev.add_prompt_logprobs();
            lp->set_token_id(request.prompt_ids(j));
            lp->set_logprob(-0.1f * static_cast<float>(j));
            lp->set_rank(j);
            for (int k = 0; k < request.params().prompt_logprobs(); ++k) {
              lp->add_top_ids(PromptAlternative(request, j, k));
              lp->add_top_logprobs(-0.05f * static_cast<float>(k));
            }
          }
        }
        if (i + 1 == tokens) {
          ev.set_finish_reason(tokens < request.params().max_tokens() ? v1::FINISH_REASON_STOP
                                                                       : v1::FINISH_REASON_LENGTH);
          ev.mutable_usage()->set_prompt_tokens(request.prompt_ids_size());
          ev.mutable_usage()->set_completion_tokens(tokens);
          ev.set_stop_token(-1);
          if (!stop_reason_.empty()) {  // ended by this stop string
            ev.set_finish_reason(v1::FINISH_REASON_STOP);
            ev.set_stop_reason(stop_reason_);
          }
        }
        on_event(ev);
      }
    }
  }

  absl::Mutex mu_;
  std::vector<v1::GenerateRequest> requests_;
  std::vector<std::string> aborted_;
  std::map<std::string, std::pair<v1::GenerateRequest, EventCallback>> held_;
};

// A fake cluster behind the admin endpoints: workers by id, each with the
// requests it runs; Migrate, Drain and KillWorker change it as the
// scheduler would.
class FakeClusterAdmin : public ClusterAdmin {
 public:
  void AddWorker(const std::string& id, v1::WorkerRole role, std::vector<std::string> requests) {
    absl::MutexLock lock(&mu_);
    v1::WorkerInfo w;
    w.set_worker_id(id);
    w.set_address("127.0.0.1:" + std::to_string(50000 + workers_.size()));
    w.set_role(role);
    w.set_alive(true);
    w.set_model_id("fake");
    w.mutable_load()->set_blocks_total(100);
    w.mutable_load()->set_blocks_free(90);
    workers_.push_back(w);
    for (std::string& r : requests) placement_[r] = id;
  }

  absl::StatusOr<v1::ListWorkersResponse> ListWorkers() override {
    absl::MutexLock lock(&mu_);
    if (!fail_with_.ok()) return fail_with_;
    v1::ListWorkersResponse out;
    for (const v1::WorkerInfo& w : workers_) {
      v1::WorkerInfo* info = out.add_workers();
      *info = w;
      for (const auto& [request, worker] : placement_) {
        if (worker == w.worker_id()) info->add_request_ids(request);
      }
      info->set_num_requests(info->request_ids_size());
    }
    return out;
  }

  absl::StatusOr<v1::MigrateResponse> Migrate(const std::string& request_id, const std::string& to) override {
    absl::MutexLock lock(&mu_);
    if (!fail_with_.ok()) return fail_with_;
    auto it = placement_.find(request_id);
    if (it == placement_.end()) return absl::NotFoundError("no request '" + request_id + "' is running");
    std::string destination = to;
    if (destination.empty()) {
      for (const v1::WorkerInfo& w : workers_) {
        if (w.worker_id() != it->second && !w.draining()) destination = w.worker_id();
      }
    }
    if (Find(destination) == nullptr) return absl::NotFoundError("no worker '" + to + "' is registered");
    if (destination == it->second) return absl::FailedPreconditionError("the request is already there");
    v1::MigrateResponse out;
    out.set_ok(true);
    out.set_source_worker_id(it->second);
    out.set_destination_worker_id(destination);
    out.set_downtime_micros(1500);
    it->second = destination;
    return out;
  }

  absl::Status Drain(const std::string& worker) override {
    absl::MutexLock lock(&mu_);
    if (!fail_with_.ok()) return fail_with_;
    v1::WorkerInfo* w = Find(worker);
    if (w == nullptr) return absl::NotFoundError("unknown worker " + worker);
    w->set_draining(true);
    return absl::OkStatus();
  }

  // Marks the worker dead, as its process ending would once noticed.
  absl::StatusOr<v1::KillWorkerResponse> KillWorker(const std::string& worker) override {
    absl::MutexLock lock(&mu_);
    if (!fail_with_.ok()) return fail_with_;
    v1::WorkerInfo* w = Find(worker);
    if (w == nullptr) return absl::NotFoundError("no worker '" + worker + "' is registered");
    if (!w->alive())
      return absl::FailedPreconditionError("worker " + w->worker_id() + " is not alive");
    if (refuse_kill_) {
      return absl::FailedPreconditionError(
          "this worker refuses Kill: fault injection is off (start `ferry worker` with "
          "--enable-fault-injection to allow it)");
    }
    w->set_alive(false);
    v1::KillWorkerResponse out;
    out.set_worker_id(w->worker_id());
    out.set_address(w->address());
    return out;
  }

  void set_fail_with(absl::Status s) {
    absl::MutexLock lock(&mu_);
    fail_with_ = std::move(s);
  }
  // Workers answer Kill as if started without --enable-fault-injection.
  void set_refuse_kill(bool refuse) {
    absl::MutexLock lock(&mu_);
    refuse_kill_ = refuse;
  }

 private:
  v1::WorkerInfo* Find(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (v1::WorkerInfo& w : workers_) {
      if (w.worker_id() == id || w.address() == id) return &w;
    }
    return nullptr;
  }

  absl::Mutex mu_;
  std::vector<v1::WorkerInfo> workers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> placement_ ABSL_GUARDED_BY(mu_);  // request -> worker
  absl::Status fail_with_ ABSL_GUARDED_BY(mu_);
  bool refuse_kill_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ferry::testing
