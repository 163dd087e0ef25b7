// Stop strings for streaming: text that could still turn into a stop string
// is held back, a matched stop string is never emitted, and matches that span
// token boundaries are found.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ferry {

class StopChecker {
 public:
  // With `include_stop`, a matched stop string is emitted (what follows it
  // still is not).
  explicit StopChecker(std::vector<std::string> stops, bool include_stop = false)
      : stops_(std::move(stops)), include_stop_(include_stop) {}

  struct Result {
    std::string emit;      // text safe to send now
    bool stopped = false;  // a stop string matched (what follows it is dropped)
    std::string matched;   // which stop string
  };

  // Adds the text of newly generated tokens.
  Result Add(std::string_view text);
  // At the end of generation: whatever was held back.
  std::string Flush();

  // Held-back text (saved with a migrating request).
  const std::string& pending() const { return pending_; }
  void set_pending(std::string pending) { pending_ = std::move(pending); }

 private:
  std::vector<std::string> stops_;
  bool include_stop_ = false;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace ferry
