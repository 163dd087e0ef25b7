#include "tools/flags.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tools/config_file.h"

namespace ferry {

void FlagParser::AddString(const std::string& name, std::string* out, const std::string& help) {
  flags_.push_back({name, help, out->empty() ? "" : *out, false, [out](const std::string& v) {
                      *out = v;
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddInt(const std::string& name, int64_t* out, const std::string& help) {
  flags_.push_back({name, help, std::to_string(*out), false, [out](const std::string& v) {
                      if (!absl::SimpleAtoi(v, out)) {
                        return absl::InvalidArgumentError(absl::StrCat("needs an integer, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddDouble(const std::string& name, double* out, const std::string& help) {
  flags_.push_back({name, help, absl::StrCat(*out), false, [out](const std::string& v) {
                      if (!absl::SimpleAtod(v, out)) {
                        return absl::InvalidArgumentError(absl::StrCat("needs a number, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddBool(const std::string& name, bool* out, const std::string& help) {
  flags_.push_back({name, help, *out ? "true" : "false", true, [out](const std::string& v) {
                      if (!absl::SimpleAtob(v, out)) {
                        return absl::InvalidArgumentError(absl::StrCat("needs true or false, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

FlagParser::Flag* FlagParser::Find(const std::string& name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::Status FlagParser::Set(Flag& f, const std::string& value, const std::string& origin) {
  absl::Status s = f.set(value);
  if (s.ok()) return s;
  return absl::InvalidArgumentError(absl::StrCat(origin, " ", s.message()));
}

absl::Status FlagParser::ApplyConfigFile(const std::string& path) {
  auto entries = LoadConfigFile(path);
  if (!entries.ok()) return entries.status();
  for (const ConfigEntry& e : *entries) {
    const std::string where =
        e.line > 0 ? absl::StrCat("config ", path, " line ", e.line) : absl::StrCat("config ", path);
    if (e.key == "config") return absl::InvalidArgumentError(absl::StrCat(where, ": a config file cannot name another"));
    Flag* f = Find(e.key);
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unknown key '", e.key, "' for '", command_, "'"));
    }
    if (auto s = Set(*f, e.value, absl::StrCat(where, ": key '", e.key, "'")); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status FlagParser::ApplyEnvironment() {
  for (Flag& f : flags_) {
    const std::string var = EnvVarForFlag(f.name);
    const char* value = std::getenv(var.c_str());
    if (value == nullptr || *value == '\0') continue;
    if (auto s = Set(f, value, absl::StrCat("$", var, " (--", f.name, ")")); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status FlagParser::Parse(int argc, char** argv) {
  // First pass: --help wins over everything; --config is read before the
  // environment and the other flags, which override it.
  std::string config_path;
  bool has_config = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return absl::OkStatus();
    }
    if (arg == "--config" || arg.rfind("--config=", 0) == 0) {
      if (has_config) return absl::InvalidArgumentError("--config is given twice");
      has_config = true;
      if (arg != "--config") {
        config_path = arg.substr(9);
      } else if (i + 1 < argc) {
        config_path = argv[++i];
      } else {
        return absl::InvalidArgumentError("--config needs a value");
      }
      if (config_path.empty()) return absl::InvalidArgumentError("--config needs a file name");
    }
  }
  if (has_config) {
    if (auto s = ApplyConfigFile(config_path); !s.ok()) return s;
  }
  if (auto s = ApplyEnvironment(); !s.ok()) return s;

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config") {
      ++i;
      continue;
    }
    if (arg.rfind("--config=", 0) == 0) continue;
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* f = Find(name);
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " for '", command_, "'"));
    }
    if (!has_value) {
      if (f->is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
    }
    if (auto s = Set(*f, value, "--" + name); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string FlagParser::Usage() const {
  std::string out = absl::StrCat("Usage: ferry ", command_, " [flags]\n\n", summary_, "\n\nFlags:\n");
  for (const Flag& f : flags_) {
    std::string left = absl::StrCat("  --", f.name, f.is_bool ? "" : " VALUE");
    if (left.size() < 28) left.resize(28, ' ');
    absl::StrAppend(&out, left, " ", f.help);
    if (!f.default_text.empty()) absl::StrAppend(&out, " (default: ", f.default_text, ")");
    out += "\n";
  }
  out += "  --config FILE              read flags from a YAML or JSON file (keys: the flag names)\n";
  out += "  --help                     show this help\n";
  absl::StrAppend(&out, "\nEvery flag can also come from the environment: --flag-name from $FERRY_FLAG_NAME.\n",
                  "The command line overrides the environment, which overrides --config.\n");
  return out;
}

int RunWithFlags(FlagParser& flags, int argc, char** argv, const std::function<int()>& body) {
  absl::Status s = flags.Parse(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n\n%s", std::string(s.message()).c_str(), flags.Usage().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  return body();
}

}  // namespace ferry
