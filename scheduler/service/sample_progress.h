// What the client has been sent of one sample: its token ids and the number
// of text bytes. Events from workers are checked against it so a token is
// never relayed twice, whichever worker (after a migration or a recovery)
// sends it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "ferry/v1/common.pb.h"

namespace ferry {

class SampleProgress {
 public:
  // Takes an event whose first token sits at position `first_pos` of the
  // sample's output. Returns what to send to the client: the event with the
  // tokens already sent removed and `seq` set to the client-side position,
  // or nullopt when nothing is left to send (all duplicates, no finish).
  // A MIGRATED finish is not the client's business: it is cleared from the
  // returned event (the caller acts on it).
  std::optional<v1::TokenEvent> Accept(const v1::TokenEvent& event, int64_t first_pos);

  const std::vector<int32_t>& output_ids() const { return output_ids_; }
  int64_t text_bytes() const { return text_bytes_; }
  int64_t duplicates_dropped() const { return duplicates_dropped_; }
  // Tokens that arrived after a gap (a position beyond what was sent): sent
  // on, since losing them would be worse, but counted.
  int64_t gaps() const { return gaps_; }

 private:
  std::vector<int32_t> output_ids_;
  int64_t text_bytes_ = 0;
  int64_t duplicates_dropped_ = 0;
  int64_t gaps_ = 0;
};

}  // namespace ferry
