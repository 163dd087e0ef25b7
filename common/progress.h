// A progress bar for long work (model loading, benchmarks). It draws only when
// stderr is a terminal and stays silent otherwise.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace ferry {

class ProgressBar {
 public:
  // `total` units of work (bytes, requests, ...); `label` is shown before the bar.
  ProgressBar(std::string label, int64_t total, bool enabled = StderrIsTerminal());
  ~ProgressBar();  // Finishes the line if anything was drawn.

  void Update(int64_t done);
  void Add(int64_t delta) { Update(done_ + delta); }
  void Finish();

  static bool StderrIsTerminal();

 private:
  void Draw();
  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool enabled_;
  bool drawn_ = false;
  bool finished_ = false;
  absl::Time start_;
  absl::Time last_draw_;
};

}  // namespace ferry
