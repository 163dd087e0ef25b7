// An incremental parser for server-sent events (the `text/event-stream` of
// OpenAI streaming): bytes arrive in arbitrary pieces, events come out whole.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace ferry::loadgen {

class SseParser {
 public:
  // Called with the data of each complete event (its `data:` lines joined
  // by '\n'). Events with no data line (comments, keep-alives) are skipped.
  using EventFn = std::function<void(std::string_view data)>;

  // Feeds the next bytes; accepts "\n", "\r\n" and "\r" line ends.
  void Feed(std::string_view bytes, const EventFn& on_event);
  // Delivers a last event that the stream ended without a blank line after.
  void Finish(const EventFn& on_event);

 private:
  void Line(std::string_view line, const EventFn& on_event);
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

}  // namespace ferry::loadgen
