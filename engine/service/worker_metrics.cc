#include "engine/service/worker_metrics.h"

namespace ferry {

WorkerMetrics::WorkerMetrics(const Engine* engine, const PrefixPullStats* pulls) {
  Gauge* blocks_total = registry_.AddGauge("ferry_kv_blocks_total", "KV cache blocks")->Get();
  Gauge* blocks_free = registry_.AddGauge("ferry_kv_blocks_free", "KV cache blocks free")->Get();
  Gauge* blocks_used = registry_.AddGauge("ferry_kv_blocks_used", "KV cache blocks held by requests")->Get();
  Gauge* blocks_cached =
      registry_.AddGauge("ferry_kv_blocks_cached", "KV cache blocks holding reusable prefixes")->Get();
  Gauge* running = registry_.AddGauge("ferry_requests_running", "sequences running")->Get();
  Gauge* waiting = registry_.AddGauge("ferry_requests_waiting", "sequences waiting for KV blocks")->Get();
  Counter* preemptions = registry_.AddCounter("ferry_preemptions_total", "sequences preempted")->Get();
  Counter* generated = registry_.AddCounter("ferry_generated_tokens_total", "tokens generated")->Get();
  Counter* device_sampled = registry_.AddCounter("ferry_device_sampled_tokens_total",
                                                 "generated tokens picked by the backend on the device")->Get();
  Counter* draft = registry_
                       .AddCounter("ferry_spec_draft_tokens_total",
                                   "draft tokens checked by speculative decoding")
                       ->Get();
  Counter* accepted =
      registry_
          .AddCounter("ferry_spec_accepted_tokens_total", "draft tokens the model agreed with")
          ->Get();
  Counter* prompt = registry_.AddCounter("ferry_prompt_tokens_total",
                                         "prompt tokens processed (computed or served from the prefix cache)")
                        ->Get();
  Gauge* hit_rate =
      registry_.AddGauge("ferry_prefix_cache_hit_rate", "prompt tokens served from the prefix cache / queried")
          ->Get();
  Gauge* tokens_per_second =
      registry_.AddGauge("ferry_tokens_per_second", "generated tokens per second, smoothed")->Get();
  CounterFamily* hit_blocks = registry_.AddCounter(
      "ferry_prefix_cache_hit_blocks_total", "prefix-cache hits in blocks, by the tier that held them", {"tier"});
  CounterFamily* hit_tokens = registry_.AddCounter(
      "ferry_prefix_cache_hit_tokens_total", "prefix-cache hits in tokens, by the tier that held them", {"tier"});
  Gauge* host_total =
      registry_.AddGauge("ferry_kv_host_blocks_total", "host tier capacity in KV blocks (0: off)")->Get();
  Gauge* host_used = registry_.AddGauge("ferry_kv_host_blocks_used", "host tier KV blocks holding a prefix")->Get();
  CounterFamily* swaps = registry_.AddCounter(
      "ferry_kv_host_swaps_total", "KV blocks copied to (out) or back from (in) the host tier", {"direction"});
  CounterFamily* swap_bytes = registry_.AddCounter(
      "ferry_kv_host_swap_bytes_total", "bytes copied to (out) or back from (in) the host tier", {"direction"});
  Counter* host_evictions =
      registry_.AddCounter("ferry_kv_host_evictions_total", "host tier blocks dropped to make room")->Get();
  Counter* imported = registry_.AddCounter("ferry_prefix_blocks_imported_total",
                                           "KV blocks pulled from other workers and cached here")->Get();
  Counter* exported = registry_.AddCounter("ferry_prefix_blocks_exported_total",
                                           "cached KV blocks copied out for other workers")->Get();
  Gauge* prefill_rate = registry_.AddGauge("ferry_prefill_tokens_per_second",
                                           "prompt tokens computed per second, smoothed")->Get();
  registry_.AddCollector([=] {
    const EngineStats s = engine->Stats();
    hit_blocks->WithLabels({"device"})->Set(static_cast<double>(s.prefix_hit_blocks_device));
    hit_blocks->WithLabels({"host"})->Set(static_cast<double>(s.prefix_hit_blocks_host));
    hit_tokens->WithLabels({"device"})->Set(static_cast<double>(s.prefix_hit_tokens_device));
    hit_tokens->WithLabels({"host"})->Set(static_cast<double>(s.prefix_hit_tokens_host));
    host_total->Set(static_cast<double>(s.host_blocks_total));
    host_used->Set(static_cast<double>(s.host_blocks_used));
    swaps->WithLabels({"out"})->Set(static_cast<double>(s.host_swap_out_blocks));
    swaps->WithLabels({"in"})->Set(static_cast<double>(s.host_swap_in_blocks));
    swap_bytes->WithLabels({"out"})->Set(static_cast<double>(s.host_swap_out_bytes));
    swap_bytes->WithLabels({"in"})->Set(static_cast<double>(s.host_swap_in_bytes));
    host_evictions->Set(static_cast<double>(s.host_evictions));
    imported->Set(static_cast<double>(s.prefix_blocks_imported));
    exported->Set(static_cast<double>(s.prefix_blocks_exported));
    prefill_rate->Set(s.prefill_tokens_per_second);
    blocks_total->Set(static_cast<double>(s.blocks_total));
    blocks_free->Set(static_cast<double>(s.blocks_free));
    blocks_used->Set(static_cast<double>(s.blocks_used));
    blocks_cached->Set(static_cast<double>(s.blocks_cached));
    running->Set(s.running);
    waiting->Set(s.waiting);
    preemptions->Set(static_cast<double>(s.preemptions));
    generated->Set(static_cast<double>(s.generated_tokens));
    device_sampled->Set(static_cast<double>(s.device_sampled_tokens));
    draft->Set(static_cast<double>(s.draft_tokens));
    accepted->Set(static_cast<double>(s.accepted_draft_tokens));
    prompt->Set(static_cast<double>(s.prompt_tokens_computed + s.prompt_tokens_cached));
    hit_rate->Set(s.prefix_cache_hit_rate);
    tokens_per_second->Set(s.tokens_per_second);
  });
  if (pulls == nullptr) return;
  CounterFamily* pull_count = registry_.AddCounter(
      "ferry_prefix_pulls_total", "prefix pulls from other workers, by result (ok, failed)", {"result"});
  Counter* pull_blocks = registry_.AddCounter("ferry_prefix_pull_blocks_total", "KV blocks received by prefix pulls")->Get();
  Counter* pull_bytes = registry_.AddCounter("ferry_prefix_pull_bytes_total", "KV bytes received by prefix pulls")->Get();
  Counter* pull_shared = registry_.AddCounter(
      "ferry_prefix_pulls_shared_pool_total",
      "prefix pulls that copied the blocks out of a peer's shared KV pool (same host)")->Get();
  Counter* pull_device = registry_.AddCounter(
      "ferry_prefix_pulls_device_pool_total",
      "prefix pulls that copied the blocks out of a peer's device KV pool (same host, CUDA IPC)")->Get();
  Counter* pull_fallbacks = registry_.AddCounter(
      "ferry_prefix_pull_fallbacks_total", "requests that computed their prefix because the pull failed")->Get();
  CounterFamily* export_count = registry_.AddCounter(
      "ferry_prefix_exports_total", "ExportPrefix calls served, by result (ok, failed)", {"result"});
  Counter* export_bytes =
      registry_.AddCounter("ferry_prefix_export_bytes_total", "KV bytes sent by ExportPrefix")->Get();
  registry_.AddCollector([=] {
    pull_count->WithLabels({"ok"})->Set(static_cast<double>(pulls->pulls_ok.load()));
    pull_count->WithLabels({"failed"})->Set(static_cast<double>(pulls->failures.load()));
    pull_blocks->Set(static_cast<double>(pulls->blocks.load()));
    pull_bytes->Set(static_cast<double>(pulls->bytes.load()));
    pull_fallbacks->Set(static_cast<double>(pulls->failures.load()));
    pull_shared->Set(static_cast<double>(pulls->shared_pool.load()));
    pull_device->Set(static_cast<double>(pulls->device_pool.load()));
    export_count->WithLabels({"ok"})->Set(static_cast<double>(pulls->exports.load()));
    export_count->WithLabels({"failed"})->Set(static_cast<double>(pulls->export_failures.load()));
    export_bytes->Set(static_cast<double>(pulls->export_bytes.load()));
  });
}

}  // namespace ferry
