// What CUDA devices this process can see. Never fails: without a driver or a
// device it says so in words.
#pragma once

#include <string>

namespace ferry::cuda {

// Number of usable devices (0 without a driver or device).
int DeviceCount();
// e.g. "1 (0: NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB)" or "none (no CUDA driver)".
std::string DescribeDevices();

}  // namespace ferry::cuda
