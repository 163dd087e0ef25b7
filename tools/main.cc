// The `ferry` binary: one subcommand per role or tool.
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/commands.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

const Command kCommands[] = {
    {"bench", "load-test an OpenAI-compatible endpoint: latency, throughput, goodput", ferry::RunBench},
    {"drain", "drain a worker: its requests migrate to other workers (a worker pod's preStop)", ferry::RunDrain},
    {"gateway", "serve the OpenAI-compatible HTTP API in front of a scheduler or worker (gRPC)",
     ferry::RunGateway},
    {"generate", "generate text from a prompt on the local CPU engine", ferry::RunGenerate},
    {"make-model", "write a Llama-architecture model with random weights and a BPE tokenizer",
     ferry::RunMakeModel},
    {"scheduler", "run the cluster scheduler (ferry.v1.Scheduler): registry, dispatch, migration",
     ferry::RunScheduler},
    {"serve", "serve the OpenAI-compatible HTTP API with an engine in this process", ferry::RunServe},
    {"sim", "simulate a cluster (real scheduler policies, engine cost model) at any scale", ferry::RunSim},
    {"version", "print the version, commit, backends and CPU features", ferry::RunVersion},
    {"worker", "serve one engine over gRPC (ferry.v1.Worker)", ferry::RunWorker},
};

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "Ferry: a distributed LLM serving system.\n\n"
               "Usage: ferry <command> [flags]\n\nCommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
  std::fprintf(out, "\nRun 'ferry <command> --help' for the flags of a command.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    PrintUsage(stdout);
    return 0;
  }
  if (cmd == "--version") cmd = "version";
  for (const Command& c : kCommands) {
    if (cmd == c.name) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "ferry: unknown command '%s'\n\n", cmd.c_str());
  PrintUsage(stderr);
  return 2;
}
