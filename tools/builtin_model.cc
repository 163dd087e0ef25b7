#include "tools/builtin_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "tools/make_model.h"

namespace ferry {

namespace fs = std::filesystem;

std::string CacheDir() {
  if (const char* d = std::getenv("FERRY_CACHE_DIR"); d != nullptr && *d != '\0') return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d != '\0') {
    return absl::StrCat(d, "/ferry");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return absl::StrCat(home, "/.cache/ferry");
  }
  return "/tmp/ferry-cache";
}

absl::StatusOr<std::string> EnsureBuiltinModel() {
  // The name carries the generator's version so a changed generator never
  // reuses an old directory.
  fs::path dir = fs::path(CacheDir()) / "models" / "ferry-tiny-v1";
  std::error_code ec;
  if (fs::exists(dir / "config.json", ec)) return dir.string();
  fs::create_directories(dir.parent_path(), ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", dir.parent_path().string(), ": ", ec.message()));
  }
  // Write into a private directory, then rename, so concurrent first runs
  // never see a half-written model.
  fs::path tmp = dir.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  Logger("tools")->info("generating the built-in model into {}", dir.string());
  MakeModelOptions options;
  options.out_dir = tmp.string();
  options.preset = "tiny";
  options.format = "hf";
  options.dtype = "f32";
  options.seed = 1;
  FERRY_RETURN_IF_ERROR(MakeModel(options));
  fs::rename(tmp, dir, ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    if (!fs::exists(dir / "config.json")) {
      return absl::InternalError(absl::StrCat("cannot move the built-in model into ", dir.string()));
    }
  }
  return dir.string();
}

}  // namespace ferry
