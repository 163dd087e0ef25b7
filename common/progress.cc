#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/time/clock.h"

namespace ferry {

bool ProgressBar::StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(std::max<int64_t>(total, 1)), enabled_(enabled),
      start_(absl::Now()), last_draw_(absl::InfinitePast()) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(int64_t done) {
  done_ = std::clamp<int64_t>(done, 0, total_);
  if (!enabled_ || finished_) return;
  absl::Time now = absl::Now();
  if (done_ < total_ && now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  Draw();
}

void ProgressBar::Draw() {
  constexpr int kWidth = 30;
  double frac = static_cast<double>(done_) / static_cast<double>(total_);
  int filled = static_cast<int>(frac * kWidth);
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '-';
  bar[kWidth] = '\0';
  double secs = absl::ToDoubleSeconds(absl::Now() - start_);
  std::fprintf(stderr, "\r%s [%s] %5.1f%% %.1fs", label_.c_str(), bar, frac * 100.0, secs);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Finish() {
  if (finished_) return;
  if (enabled_) {
    done_ = total_;
    Draw();
    std::fputc('\n', stderr);
  }
  finished_ = true;
}

}  // namespace ferry
