// What the gateway's handlers share: options, the model's tokenizer and
// template, the backend, metrics, admission control and the list of
// generations in flight (so a shutdown can abort them).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/admission.h"
#include "server/gateway_metrics.h"
#include "server/generate_backend.h"
#include "server/model_assets.h"
#include "server/reasoning_parser.h"
#include "server/tool_call_parser.h"

namespace ferry {

struct GatewayOptions {
  // Names the model answers to; the first is reported. Empty: the model's id.
  std::vector<std::string> served_model_names;
  // Context length (prompt + completion); 0: the model's.
  int max_model_len = 0;
  AdmissionOptions admission;
  // The gateway keeps only SHA-256 digests of these two (server/api_keys.h).
  std::vector<std::string> api_keys;
  // Opens the /admin/ endpoints (as "Authorization: Bearer KEY"). Empty: they
  // are open when there are no API keys either, else refused (403).
  std::string admin_key;
  // A generation running longer is aborted (504, or an error event in a
  // stream).
  absl::Duration request_timeout = absl::Minutes(10);
  // Largest request body accepted (413 beyond); the HTTP layer enforces it.
  int64_t max_body_bytes = 16 << 20;
  // How tool calls are found in chat answers with tool_choice "auto".
  ToolCallFormat tool_call_format = ToolCallFormat::kAuto;
  // How a chat answer's thinking is told from its content.
  ReasoningFormat reasoning_format = ReasoningFormat::kNone;
  // Requests that leave out temperature, top_p, top_k, min_p,
  // repetition_penalty or the token limit take the model's
  // generation_config.json values (ModelAssets::sampling_defaults).
  bool use_generation_config = true;
};

// Backend request ids of the generations running now.
class ActiveRequests {
 public:
  void Add(const std::string& id);
  void Remove(const std::string& id);
  std::vector<std::string> Snapshot() const;
  size_t size() const;
  // True when empty before `deadline`.
  bool WaitUntilEmpty(absl::Time deadline) const;

 private:
  mutable absl::Mutex mu_;
  std::multiset<std::string> ids_ ABSL_GUARDED_BY(mu_);
};

struct GatewayContext {
  GatewayOptions options;
  const ModelAssets* assets = nullptr;
  GenerateBackend* backend = nullptr;
  GatewayMetrics* metrics = nullptr;
  Admission* admission = nullptr;
  ActiveRequests* active = nullptr;
  std::string model_name;  // the first served name
  int context_length = 0;
};

}  // namespace ferry
