// The engine's part in DistAttention: lending blocks of its pool to requests
// that run on other workers, and running its own requests with positions on
// borrowed blocks (validation, and failing them when a lender fails).
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "engine/dist_attention.h"
#include "engine/engine.h"

namespace ferry {

std::future<absl::StatusOr<std::vector<int32_t>>> Engine::LendBlocks(const std::string& lease_id,
                                                                     int64_t num_blocks) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::vector<int32_t>>>>();
  auto future = promise->get_future();
  if (kv_ == nullptr) {
    promise->set_value(absl::UnimplementedError("this backend does not lend KV blocks (cpu only)"));
    return future;
  }
  if (num_blocks <= 0 || lease_id.empty()) {
    promise->set_value(absl::InvalidArgumentError(absl::StrCat("cannot lend ", num_blocks, " blocks")));
    return future;
  }
  Post([this, lease_id, num_blocks, promise] {
    if (lent_.contains(lease_id)) {
      promise->set_value(absl::AlreadyExistsError(absl::StrCat("lease ", lease_id, " exists")));
      return;
    }
    std::optional<std::vector<BlockRef>> blocks = blocks_->Allocate(num_blocks);
    if (!blocks) {
      promise->set_value(absl::ResourceExhaustedError(
          absl::StrCat("cannot lend ", num_blocks, " KV blocks: ", blocks_->num_free(), " are free")));
      return;
    }
    std::vector<int32_t> ids;
    for (const BlockRef& b : *blocks) ids.push_back(b.id());
    counters_.blocks_lent += num_blocks;
    ++counters_.lent_leases;
    lent_.emplace(lease_id, std::move(*blocks));
    Logger("engine")->info("lease={} lent {} KV blocks", lease_id, num_blocks);
    promise->set_value(std::move(ids));
  });
  return future;
}

void Engine::ReturnLentBlocks(const std::string& lease_id) {
  Post([this, lease_id] {
    auto it = lent_.find(lease_id);
    if (it == lent_.end()) return;
    counters_.blocks_lent -= static_cast<int64_t>(it->second.size());
    --counters_.lent_leases;
    Logger("engine")->info("lease={} returned {} KV blocks", lease_id, it->second.size());
    lent_.erase(it);
  });
}

absl::Status Engine::ValidateRemoteKv(const GenerateInput& input, int64_t total) const {
  if (kv_ == nullptr) return absl::UnimplementedError("borrowed KV blocks need the cpu backend");
  if (input.params.n != 1) return absl::InvalidArgumentError("requests with borrowed KV blocks must have n = 1");
  const RemoteKv& r = *input.remote_kv;
  if (r.local_tokens() <= 0 || r.local_tokens() % options_.block_size != 0 ||
      NumBlocksForTokens(r.local_tokens(), options_.block_size) > backend_->kv_shape().num_blocks) {
    return absl::InvalidArgumentError(absl::StrCat("bad local part of ", r.local_tokens(), " tokens"));
  }
  if (r.capacity_tokens() < total) {
    return absl::InvalidArgumentError(absl::StrCat("the request needs ", total, " tokens of KV but holds ",
                                                   r.capacity_tokens(), " with borrowed blocks"));
  }
  return absl::OkStatus();
}

void Engine::FailBrokenRemoteKv(const StepPlan& plan, std::vector<Sequence*>& finished) {
  for (const ScheduledSequence& s : plan.scheduled) {
    Sequence& seq = *s.seq;
    RemoteKv* r = seq.remote_kv();
    if (r == nullptr || seq.finished) continue;
    absl::Status status = r->status();
    if (status.ok()) continue;
    Logger("engine")->warn("req={} fails: {}", seq.id(), status.ToString());
    EngineEvent ev;
    Finish(seq, FinishReason::kError, ev);
    ev.error = absl::StrCat("borrowed KV blocks lost: ", status.message());
    ++counters_.borrowed_kv_failures;
    seq.group->sink(std::move(ev));
    finished.push_back(&seq);
  }
}

}  // namespace ferry
