// A small command-line flag parser for the ferry subcommands:
// `--name value` or `--name=value`, booleans as `--name` / `--name=false`,
// and `--help`. Unknown flags and bad values are errors naming the flag.
//
// Every command also takes `--config FILE` (tools/config_file.h: JSON or a
// YAML subset whose keys are the flag names) and environment overrides
// FERRY_<FLAG_NAME> (`--max-num-seqs` <- $FERRY_MAX_NUM_SEQS; empty values
// are ignored). Precedence, lowest first: defaults, the config file, the
// environment, the command line. An unknown key or a bad value in any of
// them is an error naming the key and where it came from.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ferry {

class FlagParser {
 public:
  FlagParser(std::string command, std::string summary)
      : command_(std::move(command)), summary_(std::move(summary)) {}

  void AddString(const std::string& name, std::string* out, const std::string& help);
  void AddInt(const std::string& name, int64_t* out, const std::string& help);
  void AddDouble(const std::string& name, double* out, const std::string& help);
  void AddBool(const std::string& name, bool* out, const std::string& help);

  // Parses --config, the environment and argv[1..]; argv[0] is the
  // subcommand name. InvalidArgument for an unknown flag or config key, a
  // missing value or a value of the wrong type; NotFound for an unreadable
  // config file.
  absl::Status Parse(int argc, char** argv);
  bool help_requested() const { return help_; }
  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    bool is_bool = false;
    std::function<absl::Status(const std::string&)> set;
  };
  Flag* Find(const std::string& name);
  // Sets flag `f` from `value`; `origin` names where it came from in errors.
  static absl::Status Set(Flag& f, const std::string& value, const std::string& origin);
  absl::Status ApplyConfigFile(const std::string& path);
  absl::Status ApplyEnvironment();

  std::string command_;
  std::string summary_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

// Runs a subcommand body: prints usage for --help, the error and usage
// for a bad flag (exit 2), and otherwise calls `body`.
int RunWithFlags(FlagParser& flags, int argc, char** argv, const std::function<int()>& body);

}  // namespace ferry
