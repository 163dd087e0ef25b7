#include "engine/stop_checker.h"

#include <algorithm>

namespace ferry {
namespace {

// Backs `n` off so it does not cut a UTF-8 character of `s` in two.
size_t Utf8Boundary(const std::string& s, size_t n) {
  while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

}  // namespace

StopChecker::Result StopChecker::Add(std::string_view text) {
  Result r;
  if (stopped_) {
    r.stopped = true;
    return r;
  }
  pending_.append(text);
  if (stops_.empty()) {
    r.emit.swap(pending_);
    return r;
  }
  // The earliest match of any stop string wins.
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    size_t pos = pending_.find(s);
    if (pos < first) {
      first = pos;
      r.matched = s;
    }
  }
  if (first != std::string::npos) {
    r.emit = pending_.substr(0, include_stop_ ? first + r.matched.size() : first);
    pending_.clear();
    stopped_ = r.stopped = true;
    return r;
  }
  // Hold back the longest suffix that is a prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    size_t max_len = std::min(s.size() - 1, pending_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (std::string_view(pending_).substr(pending_.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  size_t cut = Utf8Boundary(pending_, pending_.size() - hold);
  r.emit = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return r;
}

std::string StopChecker::Flush() {
  std::string out;
  if (!stopped_) out.swap(pending_);
  pending_.clear();
  return out;
}

}  // namespace ferry
