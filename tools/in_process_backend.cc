#include "tools/in_process_backend.h"

#include "engine/service/worker_service.h"

namespace ferry {

absl::Status InProcessBackend::Generate(const v1::GenerateRequest& request, EventCallback on_event) {
  absl::StatusOr<GenerateInput> input = ToGenerateInput(request, &engine_->model().tokenizer());
  if (!input.ok()) return input.status();
  return engine_->Submit(std::move(*input),
                         [cb = std::move(on_event)](EngineEvent ev) { cb(ToTokenEvent(ev)); });
}

void InProcessBackend::Abort(const std::string& request_id) { engine_->Abort(request_id); }

void ExportEngineMetrics(const Engine* engine, MetricsRegistry* r) {
  struct Gauges {
    Gauge* blocks_total;
    Gauge* blocks_used;
    Gauge* blocks_free;
    Gauge* blocks_cached;
    Gauge* running;
    Gauge* waiting;
    Gauge* hit_rate;
    Gauge* tokens_per_second;
    Counter* preemptions;
    Counter* generated;
    Counter* prompt_computed;
    Counter* prompt_cached;
    Counter* finished;
    Counter* steps;
    Counter* draft;
    Counter* accepted;
  };
  Gauges g{
      r->AddGauge("ferry_engine_kv_blocks_total", "KV cache blocks of the engine.")->Get(),
      r->AddGauge("ferry_engine_kv_blocks_used", "KV cache blocks held by requests.")->Get(),
      r->AddGauge("ferry_engine_kv_blocks_free",
                  "KV cache blocks free (including evictable cached ones).")
          ->Get(),
      r->AddGauge("ferry_engine_kv_blocks_cached", "KV cache blocks kept for prefix reuse.")->Get(),
      r->AddGauge("ferry_engine_requests_running", "Sequences the engine is running.")->Get(),
      r->AddGauge("ferry_engine_requests_waiting",
                  "Sequences waiting for KV blocks or a batch slot.")
          ->Get(),
      r->AddGauge("ferry_engine_prefix_cache_hit_rate",
                  "Prompt tokens found in the prefix cache / looked up.")
          ->Get(),
      r->AddGauge("ferry_engine_tokens_per_second", "Generated tokens per second, smoothed.")
          ->Get(),
      r->AddCounter("ferry_engine_preemptions_total", "Sequences preempted to free KV blocks.")
          ->Get(),
      r->AddCounter("ferry_engine_generated_tokens_total", "Tokens the engine generated.")->Get(),
      r->AddCounter("ferry_engine_prompt_tokens_computed_total",
                    "Prompt tokens run through the model.")
          ->Get(),
      r->AddCounter("ferry_engine_prompt_tokens_cached_total",
                    "Prompt tokens served from the prefix cache.")
          ->Get(),
      r->AddCounter("ferry_engine_requests_finished_total", "Requests the engine finished.")->Get(),
      r->AddCounter("ferry_engine_steps_total", "Engine steps run.")->Get(),
      r->AddCounter("ferry_engine_spec_draft_tokens_total",
                    "Draft tokens checked by speculative decoding (--speculative-ngram).")
          ->Get(),
      r->AddCounter("ferry_engine_spec_accepted_tokens_total",
                    "Draft tokens the model agreed with (each saved a forward pass).")
          ->Get(),
  };
  r->AddCollector([engine, g] {
    EngineStats s = engine->Stats();
    g.blocks_total->Set(static_cast<double>(s.blocks_total));
    g.blocks_used->Set(static_cast<double>(s.blocks_used));
    g.blocks_free->Set(static_cast<double>(s.blocks_free));
    g.blocks_cached->Set(static_cast<double>(s.blocks_cached));
    g.running->Set(s.running);
    g.waiting->Set(s.waiting);
    g.hit_rate->Set(s.prefix_cache_hit_rate);
    g.tokens_per_second->Set(s.tokens_per_second);
    g.preemptions->Set(static_cast<double>(s.preemptions));
    g.generated->Set(static_cast<double>(s.generated_tokens));
    g.prompt_computed->Set(static_cast<double>(s.prompt_tokens_computed));
    g.prompt_cached->Set(static_cast<double>(s.prompt_tokens_cached));
    g.finished->Set(static_cast<double>(s.requests_finished));
    g.steps->Set(static_cast<double>(s.steps));
    g.draft->Set(static_cast<double>(s.draft_tokens));
    g.accepted->Set(static_cast<double>(s.accepted_draft_tokens));
  });
}

}  // namespace ferry
