// Entry points of the ferry subcommands. Each takes argv with argv[0] set to
// the subcommand's name and returns the process exit code.
#pragma once

namespace ferry {

int RunBench(int argc, char** argv);
int RunDrain(int argc, char** argv);
int RunGateway(int argc, char** argv);
int RunGenerate(int argc, char** argv);
int RunMakeModel(int argc, char** argv);
int RunScheduler(int argc, char** argv);
int RunServe(int argc, char** argv);
int RunSim(int argc, char** argv);
int RunVersion(int argc, char** argv);
int RunWorker(int argc, char** argv);

}  // namespace ferry
