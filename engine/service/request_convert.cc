#include "engine/service/request_convert.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/random_hex.h"
#include "common/status_macros.h"

namespace ferry {
namespace {

v1::StructuredOutput ToStructuredOutput(const structured::OutputSpec& spec) {
  v1::StructuredOutput out;
  using Kind = structured::OutputSpec::Kind;
  switch (spec.kind) {
    case Kind::kNone:
      break;
    case Kind::kJsonSchema:
      out.set_json_schema(spec.text);
      break;
    case Kind::kJsonObject:
      out.set_json_object(true);
      break;
    case Kind::kRegex:
      out.set_regex(spec.text);
      break;
    case Kind::kChoice:
      for (const std::string& c : spec.choices) out.add_choice(c);
      break;
    case Kind::kGrammar:
      out.set_grammar(spec.text);
      break;
  }
  return out;
}

std::atomic<uint64_t> g_request_counter{0};

}  // namespace

absl::StatusOr<GenerateInput> ToGenerateInput(const v1::GenerateRequest& r, const Tokenizer* tokenizer) {
  GenerateInput in;
  in.request_id = r.request_id().empty()
                      ? absl::StrCat("req-", RandomHex(6), "-", g_request_counter.fetch_add(1))
                      : r.request_id();
  in.prompt_ids.assign(r.prompt_ids().begin(), r.prompt_ids().end());
  if (in.prompt_ids.empty() && !r.prompt().empty()) {
    if (tokenizer == nullptr) return absl::InvalidArgumentError("a text prompt needs a tokenizer here: send prompt_ids");
    in.prompt_ids = tokenizer->Encode(r.prompt(), tokenizer->add_bos(), true);
  }
  in.params = ToSamplingParams(r.params());
  in.priority = r.priority();
  if (r.has_resume()) {
    // The state may leave the prompt and parameters to the request itself.
    GenerateInput resumed = FromRequestState(r.resume());
    resumed.request_id = in.request_id;
    if (resumed.prompt_ids.empty()) resumed.prompt_ids = in.prompt_ids;
    if (!r.resume().has_params()) {
      resumed.params = in.params;
      resumed.params.n = 1;
    }
    if (resumed.priority == 0) resumed.priority = in.priority;
    return resumed;
  }
  return in;
}

SamplingParams ToSamplingParams(const v1::SamplingParams& p) {
  SamplingParams s;
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
  s.prompt_logprobs = p.has_prompt_logprobs() ? p.prompt_logprobs() : -1;
  s.n = p.n() == 0 ? 1 : p.n();
  s.include_stop_str_in_output = p.include_stop_str_in_output();
  s.skip_special_tokens = !p.has_skip_special_tokens() || p.skip_special_tokens();
  s.allowed_token_ids.assign(p.allowed_token_ids().begin(), p.allowed_token_ids().end());
  for (const v1::TokenSequence& w : p.bad_words())
    s.bad_words_ids.emplace_back(w.ids().begin(), w.ids().end());
  const v1::StructuredOutput& so = p.structured();
  using Kind = structured::OutputSpec::Kind;
  if (!so.json_schema().empty()) {
    s.structured = {Kind::kJsonSchema, so.json_schema(), {}};
  } else if (so.json_object()) {
    s.structured = {Kind::kJsonObject, "", {}};
  } else if (!so.regex().empty()) {
    s.structured = {Kind::kRegex, so.regex(), {}};
  } else if (so.choice_size() > 0) {
    s.structured = {Kind::kChoice, "", {so.choice().begin(), so.choice().end()}};
  } else if (!so.grammar().empty()) {
    s.structured = {Kind::kGrammar, so.grammar(), {}};
  }
  const v1::ReasoningBounds& rb = p.reasoning();
  s.reasoning.start = rb.start();
  s.reasoning.end = rb.end();
  s.reasoning.budget_tokens = rb.has_budget_tokens() ? rb.budget_tokens() : -1;
  return s;
}

v1::RequestState ToRequestState(const GenerateInput& in) {
  v1::RequestState s;
  s.set_request_id(in.request_id);
  for (int32_t id : in.prompt_ids) s.add_prompt_ids(id);
  const SamplingParams& p = in.params;
  v1::SamplingParams* q = s.mutable_params();
  q->set_temperature(p.temperature);
  q->set_top_p(p.top_p);
  q->set_top_k(p.top_k);
  q->set_min_p(p.min_p);
  q->set_repetition_penalty(p.repetition_penalty);
  q->set_frequency_penalty(p.frequency_penalty);
  q->set_presence_penalty(p.presence_penalty);
  if (p.seed) q->set_seed(*p.seed);
  for (const auto& [id, bias] : p.logit_bias) (*q->mutable_logit_bias())[id] = bias;
  q->set_max_tokens(p.max_tokens);
  q->set_min_tokens(p.min_tokens);
  for (const auto& st : p.stop) q->add_stop(st);
  for (int32_t id : p.stop_token_ids) q->add_stop_token_ids(id);
  q->set_ignore_eos(p.ignore_eos);
  if (p.logprobs >= 0) q->set_logprobs(p.logprobs);
  q->set_n(1);
  q->set_include_stop_str_in_output(p.include_stop_str_in_output);
  if (!p.skip_special_tokens) q->set_skip_special_tokens(false);
  for (int32_t id : p.allowed_token_ids) q->add_allowed_token_ids(id);
  for (const std::vector<int32_t>& w : p.bad_words_ids) {
    q->add_bad_words()->mutable_ids()->Add(w.begin(), w.end());
  }
  *q->mutable_structured() = ToStructuredOutput(p.structured);
  if (p.reasoning.active()) {
    v1::ReasoningBounds* rb = q->mutable_reasoning();
    rb->set_start(p.reasoning.start);
    rb->set_end(p.reasoning.end);
    if (p.reasoning.budget_tokens >= 0) rb->set_budget_tokens(p.reasoning.budget_tokens);
  }
  s.set_priority(in.priority);
  if (in.resume) {
    for (int32_t id : in.resume->output_ids) s.add_output_ids(id);
    s.set_sampler_rng_state(in.resume->rng_state);
    s.set_emitted_text_bytes(in.resume->emitted_text_bytes);
    s.set_sample_index(in.resume->sample_index);
    s.set_cached_prompt_tokens(in.resume->cached_prompt_tokens);
  }
  return s;
}

GenerateInput FromRequestState(const v1::RequestState& s) {
  GenerateInput in;
  in.request_id = s.request_id();
  in.prompt_ids.assign(s.prompt_ids().begin(), s.prompt_ids().end());
  in.params = ToSamplingParams(s.params());
  in.params.n = 1;
  in.priority = s.priority();
  ResumeState rs;
  rs.output_ids.assign(s.output_ids().begin(), s.output_ids().end());
  rs.rng_state = s.sampler_rng_state();
  rs.emitted_text_bytes = s.emitted_text_bytes();
  rs.sample_index = s.sample_index();
  rs.cached_prompt_tokens = s.cached_prompt_tokens();
  in.resume = std::move(rs);
  return in;
}

v1::SharedKvPool ToSharedKvPool(const SharedPoolRef& ref, int64_t bytes_per_block) {
  v1::SharedKvPool p;
  p.set_host(ref.host);
  p.set_pid(ref.pid);
  p.set_fd(ref.fd);
  p.set_inode(ref.inode);
  p.set_device(ref.device);
  p.set_size(ref.size);
  p.set_bytes_per_block(bytes_per_block);
  return p;
}

SharedPoolRef FromSharedKvPool(const v1::SharedKvPool& pool) {
  SharedPoolRef ref;
  ref.host = pool.host();
  ref.pid = pool.pid();
  ref.fd = pool.fd();
  ref.inode = pool.inode();
  ref.device = pool.device();
  ref.size = pool.size();
  return ref;
}

v1::DeviceKvPool ToDeviceKvPool(const ForwardBackend::DeviceKvPool& pool) {
  v1::DeviceKvPool p;
  p.set_host(SharedPoolHostKey());
  p.set_pid(getpid());
  p.set_kind(pool.kind);
  p.set_handle(pool.handle);
  p.set_dtype(pool.dtype);
  p.set_bytes_per_block(pool.bytes_per_block);
  p.set_num_blocks(pool.num_blocks);
  return p;
}

ForwardBackend::DeviceKvPool FromDeviceKvPool(const v1::DeviceKvPool& pool) {
  ForwardBackend::DeviceKvPool p;
  p.kind = pool.kind();
  p.handle = pool.handle();
  p.dtype = pool.dtype();
  p.bytes_per_block = pool.bytes_per_block();
  p.num_blocks = pool.num_blocks();
  p.pid = pool.pid();
  return p;
}

absl::StatusOr<int64_t> FillPoolChunk(const Engine::KvExport& blocks, int64_t first, int64_t count,
                                      const v1::DeviceKvPool* device, const v1::SharedKvPool* shared,
                                      bool name_pool, v1::KvChunk* chunk) {
  std::vector<int32_t> ids;
  if (device != nullptr) {
    FERRY_ASSIGN_OR_RETURN(ids, blocks.BlockIds(first, count));
    chunk->set_device_blocks(true);
    if (name_pool) *chunk->mutable_device_pool() = *device;
  } else if (shared != nullptr) {
    std::vector<uint64_t> checksums;
    FERRY_RETURN_IF_ERROR(blocks.DescribePoolChunk(first, count, &ids, &checksums));
    chunk->mutable_checksums()->Add(checksums.begin(), checksums.end());
    if (name_pool) *chunk->mutable_source_pool() = *shared;
  } else {
    return absl::InvalidArgumentError("no pool to name blocks in");
  }
  chunk->mutable_pool_blocks()->Add(ids.begin(), ids.end());
  return static_cast<int64_t>(ids.size());
}

}  // namespace ferry
