#include "engine/sim_cost_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ferry {
namespace {

struct GpuSpec {
  const char* name;
  double memory_bytes;
  double memory_bandwidth;  // peak bytes/s
  double bf16_flops;        // peak dense FLOP/s
  double link_bandwidth;    // KV between workers, bytes/s
};

struct ModelSpec {
  const char* name;
  double parameters;
  int num_layers;
  int num_heads;
  int num_kv_heads;
  int head_dim;
};

// Data-sheet peaks (SXM parts). Links: one 400 Gb/s NIC per GPU.
constexpr GpuSpec kGpus[] = {
    {"a100", 80e9, 2.039e12, 312e12, 50e9},
    {"h100", 80e9, 3.35e12, 989e12, 50e9},
    {"h200", 141e9, 4.8e12, 989e12, 50e9},
};

constexpr ModelSpec kModels[] = {
    {"llama3-8b", 8.03e9, 32, 32, 8, 128},
    {"llama2-7b", 6.74e9, 32, 32, 32, 128},
    {"qwen2-7b", 7.62e9, 28, 28, 4, 128},
    {"llama2-13b", 13.0e9, 40, 40, 40, 128},
};

// Fractions of peak a good serving engine sustains (decode GEMV and paged
// attention near 85 % of bandwidth, prefill GEMMs near 60 % of FLOP/s).
constexpr double kBandwidthEfficiency = 0.85;
constexpr double kComputeEfficiency = 0.6;
// Memory the runtime keeps for itself and activations, and the share of the
// device an engine hands to the KV cache (vLLM's gpu_memory_utilization).
constexpr double kReservedBytes = 2e9;
constexpr double kMemoryUtilization = 0.9;

// The small preset (124.7 M parameters, F32) on this project's 2-vCPU
// machine, fitted to BENCHMARKS.md: "CPU forward pass" (pp128 1572 tok/s,
// tg128 101-113 tok/s with 2 threads), "Serving engine" (GEMM path: 563
// tok/s at 64 sequences) and a 201.3 MB KV cache.
SimProfile CpuSmall() {
  SimProfile p;
  p.name = "cpu-small";
  p.description = "small preset F32 on 2 vCPUs (fitted to BENCHMARKS.md)";
  p.additive = true;
  p.step_overhead_s = 1.3e-3;
  p.per_seq_s = 1.07e-3;  // output matrix, sampling, attention setup per sequence
  p.weight_bytes = 400.2e6;
  p.kv_bytes_per_token = 2.0 * 12 * 4 * 64 * 4;  // K and V, 12 layers, 4 KV heads of 64, fp32
  p.memory_bandwidth = 63.9e9;
  p.flops_per_token = 151e6;  // 2 x the non-embedding parameters
  p.flops_per_attention_pair = 4.0 * 12 * 12 * 64;
  p.compute_rate = 256e9;  // pp128: 0.59 ms per token beyond the weight read
  p.kv_capacity_tokens = 8192;
  p.kv_link_bandwidth = 2.0e9;  // loopback TCP, "KV transfer throughput"
  return p;
}

SimProfile Roofline(const GpuSpec& gpu, const ModelSpec& model) {
  SimProfile p;
  p.name = absl::StrCat(gpu.name, "-", model.name);
  p.description = absl::StrCat(model.name, " bf16 on one ", gpu.name, " (roofline: ",
                               gpu.memory_bandwidth / 1e12, " TB/s, ", gpu.bf16_flops / 1e12,
                               " TFLOP/s)");
  p.step_overhead_s = 0.4e-3;
  p.per_seq_s = 5e-6;
  p.weight_bytes = 2.0 * model.parameters;
  p.kv_bytes_per_token = 2.0 * model.num_layers * model.num_kv_heads * model.head_dim * 2;
  p.memory_bandwidth = gpu.memory_bandwidth * kBandwidthEfficiency;
  p.flops_per_token = 2.0 * model.parameters;
  p.flops_per_attention_pair = 4.0 * model.num_layers * model.num_heads * model.head_dim;
  p.compute_rate = gpu.bf16_flops * kComputeEfficiency;
  const double kv_bytes = gpu.memory_bytes * kMemoryUtilization - p.weight_bytes - kReservedBytes;
  p.kv_capacity_tokens = static_cast<int64_t>(std::max(0.0, kv_bytes / p.kv_bytes_per_token));
  p.kv_link_bandwidth = gpu.link_bandwidth;
  return p;
}

}  // namespace

double StepSeconds(const SimProfile& p, const StepShape& s) {
  if (s.batch_tokens <= 0) return 0;
  const double bytes = p.weight_bytes + p.kv_bytes_per_token * static_cast<double>(s.kv_tokens);
  const double flops = p.flops_per_token * static_cast<double>(s.batch_tokens) +
                       p.flops_per_attention_pair * static_cast<double>(s.attention_pairs);
  const double memory_s = bytes / p.memory_bandwidth;
  const double compute_s = flops / p.compute_rate;
  const double body = p.additive ? memory_s + compute_s : std::max(memory_s, compute_s);
  return p.step_overhead_s + p.per_seq_s * s.num_seqs + body;
}

std::vector<std::string> SimProfileNames() {
  std::vector<std::string> names = {"cpu-small"};
  for (const GpuSpec& g : kGpus) {
    for (const ModelSpec& m : kModels) names.push_back(absl::StrCat(g.name, "-", m.name));
  }
  return names;
}

absl::StatusOr<SimProfile> LookupSimProfile(std::string_view name) {
  if (name == "cpu-small") return CpuSmall();
  for (const GpuSpec& g : kGpus) {
    for (const ModelSpec& m : kModels) {
      if (std::string(name) != absl::StrCat(g.name, "-", m.name)) continue;
      SimProfile p = Roofline(g, m);
      if (p.kv_capacity_tokens < 4096) {
        return absl::InvalidArgumentError(absl::StrCat("sim profile '", std::string(name), "': ", m.name,
                                                       " leaves no room for a KV cache on one ", g.name));
      }
      return p;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown sim profile '", std::string(name), "' (one of ",
                                                 absl::StrJoin(SimProfileNames(), ", "), ")"));
}

}  // namespace ferry
