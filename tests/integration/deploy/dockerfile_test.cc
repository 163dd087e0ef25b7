// The images cannot be built here (no container engine), so their
// Dockerfiles are checked for shape: a build stage that sets up and builds as
// the README does, a runtime stage that runs ferry as a non-root user with
// labels carrying the version, and a .dockerignore that keeps build trees out
// but every source the build needs in.
#include <fnmatch.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

std::string ReadSource(const std::string& rel) {
  std::ifstream in(std::string(FERRY_SOURCE_DIR) + "/" + rel);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Instruction {
  std::string op;    // upper case
  std::string args;  // continuation lines joined
};

struct Stage {
  std::string from;
  std::string name;
  std::vector<Instruction> instructions;
  std::string All(const std::string& op) const {
    std::string out;
    for (const Instruction& i : instructions) {
      if (i.op == op) out += i.args + "\n";
    }
    return out;
  }
};

std::vector<Stage> ParseDockerfile(const std::string& text) {
  std::vector<Stage> stages;
  std::map<std::string, std::string> global_args;  // ARG NAME=default before the first FROM
  std::istringstream in(text);
  std::string line, logical;
  auto flush = [&] {
    const size_t start = logical.find_first_not_of(" \t");
    if (start == std::string::npos) return;
    std::string body = logical.substr(start);
    logical.clear();
    const size_t sp = body.find_first_of(" \t");
    Instruction ins{body.substr(0, sp), sp == std::string::npos ? "" : body.substr(sp + 1)};
    for (char& c : ins.op) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (ins.op == "ARG" && stages.empty()) {
      const size_t eq = ins.args.find('=');
      if (eq != std::string::npos) global_args[ins.args.substr(0, eq)] = ins.args.substr(eq + 1);
    }
    if (ins.op == "FROM") {
      for (const auto& [name, value] : global_args) {
        for (size_t at; (at = ins.args.find("${" + name + "}")) != std::string::npos;) {
          ins.args.replace(at, name.size() + 3, value);
        }
      }
      Stage s;
      std::istringstream words(ins.args);
      std::string w, prev;
      words >> s.from;
      while (words >> w) {
        if (prev == "AS" || prev == "as") s.name = w;
        prev = w;
      }
      stages.push_back(s);
    } else if (!stages.empty()) {
      stages.back().instructions.push_back(ins);
    }
  };
  while (std::getline(in, line)) {
    const size_t first = line.find_first_not_of(" \t");
    if (first != std::string::npos && line[first] == '#') continue;  // comments, also inside continuations
    if (!line.empty() && line.back() == '\\') {
      logical += line.substr(0, line.size() - 1) + " ";
      continue;
    }
    logical += line;
    flush();
  }
  flush();
  return stages;
}

void CheckDockerfile(const std::string& rel, const std::string& runtime_base) {
  SCOPED_TRACE(rel);
  const std::string text = ReadSource(rel);
  ASSERT_FALSE(text.empty()) << "missing " << rel;
  const std::vector<Stage> stages = ParseDockerfile(text);
  ASSERT_GE(stages.size(), 2u);
  const Stage& build = stages.front();
  const Stage& runtime = stages.back();
  EXPECT_EQ(build.name, "build");
  EXPECT_NE(build.All("RUN").find("scripts/setup"), std::string::npos) << "the build stage must use scripts/setup";
  EXPECT_NE(build.All("RUN").find("scripts/build"), std::string::npos) << "the build stage must use scripts/build";
  EXPECT_NE(build.All("RUN").find("ferry version"), std::string::npos) << "the build checks the binary runs";
  EXPECT_NE(runtime.from.find(runtime_base), std::string::npos) << runtime.from;
  // The runtime stage copies the build's output and no sources or compilers.
  EXPECT_NE(runtime.All("COPY").find("--from=build"), std::string::npos);
  EXPECT_EQ(runtime.All("RUN").find("scripts/setup"), std::string::npos);
  EXPECT_EQ(runtime.All("RUN").find("build-essential"), std::string::npos);
  EXPECT_EQ(runtime.All("RUN").find("-dev "), std::string::npos);
  // Non-root: a numeric user (so runAsNonRoot can verify it), not 0.
  const std::string user = runtime.All("USER");
  ASSERT_FALSE(user.empty()) << "no USER in the runtime stage";
  const std::string uid = user.substr(0, user.find_first_of(":\n"));
  EXPECT_FALSE(uid.empty());
  EXPECT_EQ(uid.find_first_not_of("0123456789"), std::string::npos) << "USER " << uid << " is not numeric";
  EXPECT_NE(std::atoi(uid.c_str()), 0) << "USER is root";
  const std::string labels = runtime.All("LABEL");
  for (const char* label : {"org.opencontainers.image.version", "org.opencontainers.image.revision",
                            "org.opencontainers.image.title", "org.opencontainers.image.source"}) {
    EXPECT_NE(labels.find(label), std::string::npos) << "no label " << label;
  }
  EXPECT_NE(runtime.All("ENTRYPOINT").find("ferry"), std::string::npos);
  EXPECT_NE(runtime.All("RUN").find("ferry version"), std::string::npos) << "the runtime image checks ferry runs";
  // The version reaches the binary: the commit goes to the build.
  EXPECT_NE(build.All("ENV").find("FERRY_GIT_COMMIT"), std::string::npos);
  EXPECT_NE(ReadSource("CMakeLists.txt").find("$ENV{FERRY_GIT_COMMIT}"), std::string::npos);
  // Version label default matches the project's version.
  const std::string cmake = ReadSource("CMakeLists.txt");
  const size_t v = cmake.find("project(ferry VERSION ");
  ASSERT_NE(v, std::string::npos);
  const std::string version = cmake.substr(v + 22, cmake.find_first_of(" )", v + 22) - v - 22);
  EXPECT_NE(runtime.All("ARG").find("FERRY_VERSION=" + version), std::string::npos) << "version " << version;
}

TEST(DockerfileTest, CpuImage) { CheckDockerfile("deploy/docker/Dockerfile.cpu", "debian:12-slim"); }

TEST(DockerfileTest, CudaImageIsOnTheNvidiaRuntime) {
  CheckDockerfile("deploy/docker/Dockerfile.cuda", "nvidia/cuda:");
  const std::vector<Stage> stages = ParseDockerfile(ReadSource("deploy/docker/Dockerfile.cuda"));
  ASSERT_GE(stages.size(), 2u);
  EXPECT_NE(stages.back().from.find("-runtime-"), std::string::npos);
  EXPECT_NE(stages.front().All("RUN").find("-DFERRY_CUDA=ON"), std::string::npos);
}

TEST(DockerfileTest, DockerignoreKeepsSourcesAndDropsBuildTrees) {
  const std::string text = ReadSource(".dockerignore");
  ASSERT_FALSE(text.empty());
  std::vector<std::string> patterns;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    while (!line.empty() && line.back() == '/') line.pop_back();
    patterns.push_back(line);
  }
  auto ignored = [&](const std::string& path) {
    bool out = false;
    for (std::string p : patterns) {
      const bool negate = !p.empty() && p[0] == '!';
      if (negate) p = p.substr(1);
      // A pattern ignores a path or any of its parent directories.
      std::string prefix = path;
      bool match = false;
      while (!prefix.empty()) {
        match |= ::fnmatch(p.c_str(), prefix.c_str(), FNM_PATHNAME) == 0;
        if (p.rfind("**/", 0) == 0) {
          match |= ::fnmatch(p.substr(3).c_str(), prefix.substr(prefix.rfind('/') + 1).c_str(), 0) == 0;
        }
        const size_t slash = prefix.rfind('/');
        prefix = slash == std::string::npos ? "" : prefix.substr(0, slash);
      }
      if (match) out = !negate;
    }
    return out;
  };
  for (const char* needed : {"CMakeLists.txt", "cmake/FerryCuda.cmake", "common/version.cc.in", "proto/CMakeLists.txt",
                             "kvcache", "engine/engine.cc", "cuda/CMakeLists.txt", "scheduler", "server", "tools/main.cc",
                             "scripts/setup", "scripts/build", "benchmarks", "tests/CMakeLists.txt"}) {
    EXPECT_FALSE(ignored(needed)) << needed << " is needed by the image build but .dockerignore drops it";
  }
  for (const char* dropped : {".git", "build", "build-cpu", "build-deploy/bin/ferry", "tests/e2e/node_modules",
                              "engine/__pycache__/x.pyc"}) {
    EXPECT_TRUE(ignored(dropped)) << dropped << " should stay out of the build context";
  }
}

}  // namespace
}  // namespace ferry
