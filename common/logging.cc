#include "common/logging.h"

#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "spdlog/sinks/stdout_color_sinks.h"

namespace ferry {
namespace {

spdlog::level::level_enum& CurrentLevel() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

}  // namespace

absl::Status SetupLogging(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown log level '", Sv(level), "' (use trace, debug, info, warn, error or off)"));
  }
  CurrentLevel() = parsed;
  spdlog::apply_all([&](std::shared_ptr<spdlog::logger> l) { l->set_level(parsed); });
  return absl::OkStatus();
}

std::shared_ptr<spdlog::logger> Logger(std::string_view module) {
  std::string name(module);
  if (auto existing = spdlog::get(name)) return existing;
  // Two threads may ask for a new module's logger at once.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %n] %v");
  logger->set_level(CurrentLevel());
  return logger;
}

}  // namespace ferry
