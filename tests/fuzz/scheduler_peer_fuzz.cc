// libFuzzer entry for what the scheduler takes from its workers: a run of
// RegisterWorker and Heartbeat messages (any bytes), clock steps, drains and
// placements, applied as the scheduler applies them (scheduler/service/
// peer_messages.h, the worker registry, the prefix index, prefill/decode
// placement over each dispatch policy). Nothing may crash, every load that
// reaches a policy is in range, and a placement names a worker of the view
// that accepts new work.
//
// Input: records of [op byte][u16 length][length bytes]:
//   op % 5 == 0: RegisterWorkerRequest   1: HeartbeatRequest
//             2: clock step (ms), then expiry    3: drain worker "w<byte>"
//             4: place a request (prompt ids from the bytes)
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "scheduler/policy/disaggregation_policy.h"
#include "scheduler/policy/dispatch_policy.h"
#include "scheduler/service/peer_messages.h"
#include "scheduler/service/prompt_hashes.h"

namespace {

using namespace ferry;  // NOLINT: a harness

void Require(bool ok) {
  if (!ok) std::abort();
}

void CheckLoad(const WorkerLoad& l) {
  Require(l.blocks_free >= 0 && l.blocks_total >= 0 && l.running_requests >= 0 && l.waiting_requests >= 0);
  Require(l.blocks_total == 0 || l.blocks_free <= l.blocks_total);
  Require(l.blocks_needed_waiting >= 0 && l.cached_blocks >= 0 && l.kv_bytes_per_block >= 0);
  Require(std::isfinite(l.tokens_per_second) && l.tokens_per_second >= 0);
  Require(std::isfinite(l.prefill_tokens_per_second) && l.prefill_tokens_per_second >= 0);
}

struct Cluster {
  WorkerRegistry registry{WorkerRegistryOptions{}};
  PrefixIndex index{64};
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  std::vector<std::unique_ptr<DisaggregationPolicy>> placements;

  Cluster() {
    for (const char* name : {"round-robin", "least-loaded", "prefix-aware"}) {
      auto dispatch = MakeDispatchPolicy(name);
      Require(dispatch.ok());
      placements.push_back(std::make_unique<DisaggregationPolicy>(std::move(*dispatch), DisaggregationOptions{}));
    }
  }

  ClusterView View() const {
    ClusterView view;
    AddWorkerViews(registry, {}, view);
    for (const WorkerView& w : view.workers) CheckLoad(w.load);
    return view;
  }

  void Place(std::string_view bytes) {
    std::vector<int32_t> prompt;
    for (unsigned char c : bytes) prompt.push_back(c);
    const ClusterView view = View();
    DispatchRequest d;
    d.request_id = "r";
    d.num_prompt_tokens = static_cast<int64_t>(prompt.size());
    d.num_prompt_blocks = (d.num_prompt_tokens + 15) / 16;
    for (const WorkerView& w : view.workers) {
      const WorkerRecord* rec = registry.Find(w.worker_id);
      Require(rec != nullptr);
      const uint64_t root = rec->registration.block_hash_root;
      if (root == 0) continue;
      const std::vector<uint64_t> hashes = PromptBlockHashes(prompt, 16, root);
      const int64_t match = index.MatchBlocks(w.worker_id, hashes);
      Require(match >= 0 && match <= static_cast<int64_t>(hashes.size()));
      if (match > 0) d.cached_prefix_blocks[w.worker_id] = match;
    }
    for (auto& placement : placements) {
      absl::StatusOr<Placement> p = placement->Place(view, d, now);
      if (!p.ok()) continue;
      const WorkerView* chosen = view.FindWorker(p->worker_id);
      Require(chosen != nullptr && AcceptsNewWork(*chosen));
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Cluster cluster;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (int records = 0; in.size() >= 3 && records < 64; ++records) {
    const int op = static_cast<unsigned char>(in[0]) % 5;
    size_t len = static_cast<unsigned char>(in[1]) | (static_cast<size_t>(static_cast<unsigned char>(in[2])) << 8);
    in.remove_prefix(3);
    len = std::min(len, in.size());
    const std::string_view bytes = in.substr(0, len);
    in.remove_prefix(len);
    switch (op) {
      case 0: {
        v1::RegisterWorkerRequest request;
        if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) break;
        const WorkerRegistration reg = RegistrationFromProto(request);
        Require(reg.block_size >= 0);
        auto result = cluster.registry.Register(reg, cluster.now);
        if (!result.ok()) break;
        for (const std::string& id : result->replaced) cluster.index.DropWorker(id);
        break;
      }
      case 1: {
        v1::HeartbeatRequest request;
        if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) break;
        const WorkerLoad load = LoadFromProto(request.load());
        CheckLoad(load);
        auto w = cluster.registry.Heartbeat(request.worker_id(), request.incarnation_id(), load, cluster.now);
        if (w.ok()) {
          ApplyBlockHashes(**w, request.load(), cluster.index);
          Require(cluster.index.NumBlocks((*w)->worker_id) <= 64);
        }
        break;
      }
      case 2: {
        int64_t ms = 0;
        for (unsigned char c : bytes.substr(0, 2)) ms = ms * 256 + c;
        cluster.now += absl::Milliseconds(ms);
        for (const std::string& id : cluster.registry.ExpireSilent(cluster.now)) cluster.index.DropWorker(id);
        break;
      }
      case 3:
        if (!bytes.empty()) {
          (void)cluster.registry.SetDraining(absl::StrCat("w", static_cast<unsigned char>(bytes[0]) % 8), true);
        }
        break;
      case 4:
        cluster.Place(bytes);
        break;
    }
  }
  return 0;
}
