// spdlog setup: one logger per module, all writing to stderr.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

namespace ferry {

// Sets the level of every Ferry logger ("trace", "debug", "info", "warn",
// "error", "off"). Fails with InvalidArgument for an unknown level name.
absl::Status SetupLogging(std::string_view level);

// The logger for `module` ("engine", "gateway", ...), created on first use.
std::shared_ptr<spdlog::logger> Logger(std::string_view module);

}  // namespace ferry
