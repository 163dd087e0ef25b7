#include "tools/worker_join.h"

#include <cstdint>
#include <vector>

namespace ferry {

std::unique_ptr<SchedulerClient> JoinScheduler(
    const std::string& scheduler_address, const std::string& advertise_address, Engine* engine,
    const WorkerService& service, v1::WorkerRole role,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  SchedulerClientOptions o;
  o.scheduler_address = scheduler_address;
  o.channel_credentials = std::move(credentials);
  v1::RegisterWorkerRequest& r = o.registration;
  r.set_address(advertise_address);
  r.set_role(role);
  r.set_model_id(engine->model().id());
  r.set_incarnation_id(service.incarnation_id());
  const ModelConfig& c = engine->model().config();
  v1::KvLayout* layout = r.mutable_kv_layout();
  layout->set_model_id(engine->model().id());
  layout->set_num_layers(c.num_layers);
  layout->set_num_kv_heads(c.num_kv_heads);
  layout->set_head_dim(c.head_dim);
  layout->set_block_size(engine->Stats().block_size);
  layout->set_dtype("f32");
  r.set_block_hash_root(engine->block_hash_root());
  auto client = std::make_unique<SchedulerClient>(std::move(o), [engine, &service] {
    v1::LoadReport load = service.Load();
    const BlockHashEvents events = engine->TakeBlockHashEvents();
    std::vector<uint64_t> stored, removed;
    NetBlockHashChanges(events.events, &stored, &removed);
    load.mutable_stored_block_hashes()->Add(stored.begin(), stored.end());
    load.mutable_removed_block_hashes()->Add(removed.begin(), removed.end());
    load.set_block_hashes_reset(events.reset);
    return load;
  });
  client->Start();
  return client;
}

}  // namespace ferry
