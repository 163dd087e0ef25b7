// SIGINT/SIGTERM handling for long-running roles: the signals are blocked in
// every thread and one thread waits for them, so shutdown runs as ordinary
// code instead of inside a signal handler.
#pragma once

namespace ferry {

// Call before any thread starts (threads inherit the mask).
void BlockShutdownSignals();
// Blocks until SIGINT or SIGTERM arrives; returns its number.
int WaitForShutdownSignal();

}  // namespace ferry
