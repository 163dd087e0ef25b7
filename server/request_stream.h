// The events of one HTTP request's generations, from backend threads to the
// HTTP thread that answers it. Backend callbacks only push and notify; the
// callbacks hold the stream through a shared_ptr, so events that arrive after
// the HTTP side has given up are simply dropped with it.
#pragma once

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ferry/v1/common.pb.h"
#include "server/generate_backend.h"

namespace ferry {

// A finish reason that ends a sample for the client (not a hand-over).
bool IsFinal(v1::FinishReason reason);

class RequestStream : public std::enable_shared_from_this<RequestStream> {
 public:
  struct Item {
    int prompt_index = 0;
    v1::TokenEvent event;
  };

  // `num_samples`: prompts x n, the number of finishing events to expect.
  explicit RequestStream(int num_samples) : unfinished_(num_samples) {}

  // A callback for the backend that tags events with `prompt_index`.
  GenerateBackend::EventCallback CallbackFor(int prompt_index);

  // Waits until there are events, every sample has finished, or `deadline`;
  // appends what is pending to `out`. Returns false on the deadline with
  // nothing new.
  bool WaitAndTake(absl::Time deadline, std::vector<Item>* out);
  // Every sample has sent its last event.
  bool finished() const;

 private:
  void Push(int prompt_index, const v1::TokenEvent& event);

  mutable absl::Mutex mu_;
  std::vector<Item> pending_ ABSL_GUARDED_BY(mu_);
  int unfinished_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
