#include "tools/flags.h"

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace ferry {

void FlagParser::AddString(const std::string& name, std::string* out, const std::string& help) {
  flags_.push_back({name, help, out->empty() ? "" : *out, false, [out](const std::string& v) {
                      *out = v;
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddInt(const std::string& name, int64_t* out, const std::string& help) {
  flags_.push_back({name, help, std::to_string(*out), false, [out, name](const std::string& v) {
                      if (!absl::SimpleAtoi(v, out)) {
                        return absl::InvalidArgumentError(
                            absl::StrCat("--", name, " needs an integer, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddDouble(const std::string& name, double* out, const std::string& help) {
  flags_.push_back({name, help, absl::StrCat(*out), false, [out, name](const std::string& v) {
                      if (!absl::SimpleAtod(v, out)) {
                        return absl::InvalidArgumentError(
                            absl::StrCat("--", name, " needs a number, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddBool(const std::string& name, bool* out, const std::string& help) {
  flags_.push_back({name, help, *out ? "true" : "false", true, [out, name](const std::string& v) {
                      if (!absl::SimpleAtob(v, out)) {
                        return absl::InvalidArgumentError(
                            absl::StrCat("--", name, " needs true or false, got '", v, "'"));
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

absl::Status FlagParser::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return absl::OkStatus();
    }
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
    if (auto s = f->set(value); !s.ok()) return s;
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
  out += "  --help                     show this help\n";
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
