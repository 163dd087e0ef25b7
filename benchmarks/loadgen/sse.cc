#include "benchmarks/loadgen/sse.h"

namespace ferry::loadgen {

void SseParser::Feed(std::string_view bytes, const EventFn& on_event) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the LF of a CRLF already ended the line
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      std::string line = std::move(line_);
      line_.clear();
      Line(line, on_event);
    } else {
      line_.push_back(c);
    }
  }
}

void SseParser::Finish(const EventFn& on_event) {
  if (!line_.empty()) {
    std::string line = std::move(line_);
    line_.clear();
    Line(line, on_event);
  }
  Line("", on_event);
}

void SseParser::Line(std::string_view line, const EventFn& on_event) {
  if (line.empty()) {
    if (has_data_) on_event(data_);
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // a comment
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value =
      colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;  // event:, id:, retry: carry nothing we use
  if (has_data_) data_.push_back('\n');
  data_.append(value);
  has_data_ = true;
}

}  // namespace ferry::loadgen
