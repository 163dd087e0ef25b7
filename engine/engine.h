// The serving engine of one worker: one thread owns the model, the KV cache
// and the block pool and runs the step loop; other threads only post
// requests and aborts to it and read a snapshot of its statistics.
//
// Each step mixes decode tokens and prefill chunks in one ragged batch
// (continuous batching with chunked prefill), reuses cached prefixes, and
// preempts by recompute when KV blocks run out.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_pool.h"
#include "engine/engine_types.h"
#include "engine/llama_forward.h"
#include "engine/model.h"
#include "engine/step_scheduler.h"
#include "kvcache/block_pool.h"
#include "kvcache/kv_cache.h"

namespace ferry {

class Engine {
 public:
  // Allocates the KV cache and starts the step loop. InvalidArgument for bad
  // options; ResourceExhausted when the KV memory cannot be had.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::shared_ptr<const Model> model,
                                                        const EngineOptions& options);
  // Aborts what is still running and joins the loop.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request; events then arrive on `sink` from the
  // engine thread, the last one of each sample with a finish reason.
  // InvalidArgument (empty prompt, token ids outside the vocabulary, prompt
  // plus max_tokens beyond the context or the KV cache, bad sampling
  // parameters); AlreadyExists for a request id in use; Unavailable after
  // shutdown.
  absl::Status Submit(GenerateInput input, EventSink sink);
  // Aborts a request: its blocks are freed in the next loop iteration and its
  // samples end with FinishReason::kAbort. Unknown ids are ignored.
  void Abort(const std::string& request_id);

  EngineStats Stats() const;
  const Model& model() const { return *model_; }
  const EngineOptions& options() const { return options_; }
  int max_model_len() const { return max_model_len_; }
  int64_t num_kv_blocks() const { return kv_->num_blocks(); }

 private:
  Engine(std::shared_ptr<const Model> model, const EngineOptions& options);
  void Loop();
  void DrainInbox();
  void Step();
  void ProcessSample(Sequence& seq, std::span<float> logits, std::vector<Sequence*>& finished);
  void ForkSamples(Sequence& parent, std::span<const float> logits, std::vector<Sequence*>& finished);
  void Finish(Sequence& seq, FinishReason reason, EngineEvent& event);
  void FailAll(const std::string& error);
  void PublishStats();

  std::shared_ptr<const Model> model_;
  EngineOptions options_;
  int max_model_len_ = 0;
  ThreadPool pool_;
  std::unique_ptr<LlamaForward> forward_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<BlockPool> blocks_;
  std::unique_ptr<StepScheduler> scheduler_;

  // Inbox, shared with posting threads.
  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<RequestGroup>> new_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> aborts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> active_ids_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_arrival_ ABSL_GUARDED_BY(mu_) = 0;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);

  // Loop-thread state.
  Rng seed_rng_;
  std::vector<float> logits_;
  std::vector<int32_t> batch_tokens_, batch_positions_, query_start_, seq_lens_, logits_rows_;
  double tokens_per_second_ = 0;
  EngineStats counters_;
  std::thread thread_;
};

}  // namespace ferry
