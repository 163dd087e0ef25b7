#include "scheduler/service/sample_progress.h"

#include <algorithm>

namespace ferry {

std::optional<v1::TokenEvent> SampleProgress::Accept(const v1::TokenEvent& event, int64_t first_pos) {
  const int64_t sent = static_cast<int64_t>(output_ids_.size());
  const int64_t n = event.token_ids_size();
  int64_t skip = 0;
  if (first_pos < sent) skip = std::min(n, sent - first_pos);
  if (first_pos > sent) ++gaps_;
  duplicates_dropped_ += skip;

  v1::TokenEvent out = event;
  if (out.finish_reason() == v1::FINISH_REASON_MIGRATED) {
    out.set_finish_reason(v1::FINISH_REASON_UNSPECIFIED);
    out.clear_migrated_to();
    out.clear_usage();
  }
  if (skip > 0) {
    out.clear_token_ids();
    for (int64_t i = skip; i < n; ++i) out.add_token_ids(event.token_ids(i));
    if (event.logprobs_size() == n) {
      out.clear_logprobs();
      for (int64_t i = skip; i < n; ++i) *out.add_logprobs() = event.logprobs(i);
    }
    // Every token was a repeat: so is its text (workers resume with the
    // byte count already sent and emit only what lies beyond it).
    if (skip == n) out.clear_text();
  }
  out.set_seq(static_cast<uint64_t>(sent));
  for (int32_t id : out.token_ids()) output_ids_.push_back(id);
  text_bytes_ += static_cast<int64_t>(out.text().size());

  const bool empty = out.token_ids_size() == 0 && out.text().empty();
  const bool finishes = out.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
  if (empty && !finishes && out.error().empty()) return std::nullopt;
  return out;
}

}  // namespace ferry
