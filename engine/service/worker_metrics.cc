#include "engine/service/worker_metrics.h"

namespace ferry {

WorkerMetrics::WorkerMetrics(const Engine* engine) {
  Gauge* blocks_total = registry_.AddGauge("ferry_kv_blocks_total", "KV cache blocks")->Get();
  Gauge* blocks_free = registry_.AddGauge("ferry_kv_blocks_free", "KV cache blocks free")->Get();
  Gauge* blocks_used = registry_.AddGauge("ferry_kv_blocks_used", "KV cache blocks held by requests")->Get();
  Gauge* blocks_cached =
      registry_.AddGauge("ferry_kv_blocks_cached", "KV cache blocks holding reusable prefixes")->Get();
  Gauge* running = registry_.AddGauge("ferry_requests_running", "sequences running")->Get();
  Gauge* waiting = registry_.AddGauge("ferry_requests_waiting", "sequences waiting for KV blocks")->Get();
  Counter* preemptions = registry_.AddCounter("ferry_preemptions_total", "sequences preempted")->Get();
  Counter* generated = registry_.AddCounter("ferry_generated_tokens_total", "tokens generated")->Get();
  Counter* prompt = registry_.AddCounter("ferry_prompt_tokens_total",
                                         "prompt tokens processed (computed or served from the prefix cache)")
                        ->Get();
  Gauge* hit_rate =
      registry_.AddGauge("ferry_prefix_cache_hit_rate", "prompt tokens served from the prefix cache / queried")
          ->Get();
  Gauge* tokens_per_second =
      registry_.AddGauge("ferry_tokens_per_second", "generated tokens per second, smoothed")->Get();
  registry_.AddCollector([=] {
    const EngineStats s = engine->Stats();
    blocks_total->Set(static_cast<double>(s.blocks_total));
    blocks_free->Set(static_cast<double>(s.blocks_free));
    blocks_used->Set(static_cast<double>(s.blocks_used));
    blocks_cached->Set(static_cast<double>(s.blocks_cached));
    running->Set(s.running);
    waiting->Set(s.waiting);
    preemptions->Set(static_cast<double>(s.preemptions));
    generated->Set(static_cast<double>(s.generated_tokens));
    prompt->Set(static_cast<double>(s.prompt_tokens_computed + s.prompt_tokens_cached));
    hit_rate->Set(s.prefix_cache_hit_rate);
    tokens_per_second->Set(s.tokens_per_second);
  });
}

}  // namespace ferry
