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
  explicit StopChecker(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  struct Result {
    std::string emit;      // text safe to send now
    bool stopped = false;  // a stop string matched (it and what follows are dropped)
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
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace ferry
