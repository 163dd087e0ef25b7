#include "tools/signals.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

namespace ferry {
namespace {

int g_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  (void)!write(g_pipe[1], &b, 1);  // async-signal-safe
  errno = saved;
}

}  // namespace

void BlockShutdownSignals() {
  if (g_pipe[0] < 0) {
    if (pipe2(g_pipe, O_CLOEXEC) != 0) return;
    fcntl(g_pipe[1], F_SETFL, O_NONBLOCK);
  }
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A client that disconnects must not kill the process.
  signal(SIGPIPE, SIG_IGN);
}

int WaitForShutdownSignal() {
  if (g_pipe[0] < 0) BlockShutdownSignals();
  unsigned char b = 0;
  while (true) {
    // Wait in poll(), not in read(): ThreadSanitizer runs a signal handler
    // only inside calls it knows may block (poll, yes; read, no, in clang
    // 14), deferring it otherwise until the call returns, and with
    // SA_RESTART a read of the empty pipe never returns.
    pollfd p = {g_pipe[0], POLLIN, 0};
    if (poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      return SIGTERM;
    }
    ssize_t n = read(g_pipe[0], &b, 1);
    if (n == 1) return b;
    if (n < 0 && errno != EINTR) return SIGTERM;
  }
}

}  // namespace ferry
