#include <cstdio>

#include "common/cpu_features.h"
#include "common/version.h"
#include "tools/commands.h"
#include "tools/flags.h"
#if FERRY_HAVE_CUDA
#include "cuda/device_info.h"
#endif

namespace ferry {

int RunVersion(int argc, char** argv) {
  FlagParser flags("version", "Prints the version, git commit, compiled-in backends and CPU features.");
  return RunWithFlags(flags, argc, argv, [] {
    std::printf("ferry %s\n", Version());
    std::printf("commit: %s\n", GitCommit());
    std::printf("backends: cpu%s\n", FERRY_HAVE_CUDA ? " cuda" : "");
    std::printf("cuda: %s\n", FERRY_HAVE_CUDA ? "yes" : "no");
#if FERRY_HAVE_CUDA
    std::printf("cuda devices: %s\n", cuda::DescribeDevices().c_str());
#endif
    std::printf("cpu features: %s\n", GetCpuFeatures().ToString().c_str());
    return 0;
  });
}

}  // namespace ferry
