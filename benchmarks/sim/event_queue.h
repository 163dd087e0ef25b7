// The simulator's clock and agenda: events ordered by time, and events at
// the same time in the order they were scheduled, so a run is a pure
// function of its inputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <queue>
#include <vector>

namespace ferry::sim {

enum class EventKind : uint8_t {
  kArrival,          // a: request index
  kStepDone,         // a: worker index
  kHeartbeat,        // load reports reach the scheduler
  kMigrationTick,    // the scheduler runs the migration policy
  kMigrationCopied,  // a: migration index; bulk KV copy finished
  kMigrationResume,  // a: migration index; the request continues on the destination
};

struct Event {
  double time_s = 0;
  uint64_t order = 0;  // scheduling order, breaks ties
  EventKind kind = EventKind::kArrival;
  int64_t a = 0;
};

class EventQueue {
 public:
  void Push(double time_s, EventKind kind, int64_t a = 0) { heap_.push(Event{time_s, next_order_++, kind, a}); }
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  // The earliest event; the queue must not be empty.
  Event Pop() {
    Event e = heap_.top();
    heap_.pop();
    return e;
  }

 private:
  struct Later {
    bool operator()(const Event& x, const Event& y) const {
      if (x.time_s != y.time_s) return x.time_s > y.time_s;
      return x.order > y.order;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> heap_;
  uint64_t next_order_ = 0;
};

}  // namespace ferry::sim
