// SIGINT/SIGTERM handling for long-running roles. A tiny handler only writes
// the signal number to a pipe; one thread waits on the pipe, so shutdown runs
// as ordinary code. A handler (rather than a blocked mask) also covers
// threads that libraries start before main, which would otherwise receive
// the signal with its default action and kill the process mid-drain.
#pragma once

namespace ferry {

// Installs the handlers (and ignores SIGPIPE). Call early in main.
void BlockShutdownSignals();
// Blocks until SIGINT or SIGTERM arrives; returns its number. Later signals
// queue up for later calls.
int WaitForShutdownSignal();

}  // namespace ferry
