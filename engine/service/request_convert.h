// The worker's wire forms of a generation: a Generate request (fresh, or
// resuming a sample) and a paused sample's state as it moves between
// workers, converted to the engine's GenerateInput. Conversion applies the
// proto's "zero means default" rules and nothing else; the engine's
// ValidateGenerateInput (engine/input_validation.h) then checks the result.
#pragma once

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/engine_types.h"
#include "engine/tokenizer/tokenizer.h"
#include "kvcache/shared_pool.h"
#include "ferry/v1/worker.pb.h"

namespace ferry {

// The proto's sampling parameters with its "zero means default" rules.
SamplingParams ToSamplingParams(const v1::SamplingParams& p);
// Converts a Generate request (fresh or resumed) for the engine. Tokenizes
// `prompt` when there are no ids (InvalidArgument without a tokenizer).
// An empty request id gets a fresh one.
absl::StatusOr<GenerateInput> ToGenerateInput(const v1::GenerateRequest& request, const Tokenizer* tokenizer);
// A paused sample's state to and from its wire form.
v1::RequestState ToRequestState(const GenerateInput& input);
GenerateInput FromRequestState(const v1::RequestState& state);
// A shared KV pool's reference (kvcache/shared_pool.h) to and from its wire
// form; bytes_per_block is the pool's fp32 block size.
v1::SharedKvPool ToSharedKvPool(const SharedPoolRef& ref, int64_t bytes_per_block);
SharedPoolRef FromSharedKvPool(const v1::SharedKvPool& pool);
// A device KV pool (CUDA IPC) to and from its wire form, with this
// process's host key and pid.
v1::DeviceKvPool ToDeviceKvPool(const ForwardBackend::DeviceKvPool& pool);
ForwardBackend::DeviceKvPool FromDeviceKvPool(const v1::DeviceKvPool& pool);

// Names blocks [first, first + count) of `blocks` (clipped as
// KvExport::EncodeChunk clips) in `chunk` by id instead of carrying them:
// ids of `device` (device_blocks set) when given, else ids of `shared` with
// each block's checksum. With `name_pool` the chunk names the pool too (the
// first such chunk of a transfer must). Returns the number of blocks named;
// InvalidArgument without a pool; the errors of KvExport::BlockIds and
// KvExport::DescribePoolChunk.
absl::StatusOr<int64_t> FillPoolChunk(const Engine::KvExport& blocks, int64_t first, int64_t count,
                                      const v1::DeviceKvPool* device, const v1::SharedKvPool* shared,
                                      bool name_pool, v1::KvChunk* chunk);

}  // namespace ferry
