// Child processes for the benchmarks that run `ferry scheduler` and
// `ferry worker` as separate programs on loopback: a process that dies with
// the benchmark, the port it bound, free ports for flags that take no 0.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/child_process.h"

namespace ferry::bench {

// The port a process wrote to `file` (its --port-file), or 0 after `timeout`
// or when `process` exits first.
int WaitForPortFile(const std::string& file, ChildProcess& process, absl::Duration timeout);

// The `ferry` program next to this benchmark's own executable (build/bin).
std::string FerryBesideSelf();

// A new empty directory under $TMPDIR (or /tmp); removed by the caller.
std::string MakeTempDir(const std::string& prefix);

}  // namespace ferry::bench
