// A build without CUDA: asking for the cuda backend is an error that says so.
#include "engine/backend.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(const Model&, const EngineOptions& options) {
  return absl::UnimplementedError("--device " + options.device +
                                  ": this ferry was built without CUDA (configure with nvcc on the PATH or "
                                  "-DFERRY_CUDA=ON)");
}

}  // namespace ferry
