#pragma once

// An agent's outbound queue: every report (inventory, heartbeat, state
// message) is a file of its own (queue/<seq>.pb, written durably) until an
// MP acknowledged it. Sequence numbers are kept in `seq` and never reused.
// Beyond `max_reports`, the oldest heartbeats and state messages go, never
// an inventory (the site would see a gap) nor a deployment state.
//
// Thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "strata/v1/client.pb.h"

namespace strata::agent {

class OutboundQueue {
 public:
  // `dir`: the agent's state directory (queue/ and seq inside).
  OutboundQueue(std::string dir, int64_t max_reports);

  // Creates queue/ and reads the last sequence number.
  absl::Status Open();

  // The sequence number the next report gets.
  int64_t next_seq();
  // Numbers the report, stamps its creation time and stores it.
  absl::Status Enqueue(v1::ClientReport report);

  // The oldest reports, at most `max_reports` and about `max_bytes` (at
  // least one), with the files to remove once acknowledged. An unreadable
  // file is dropped (and logged).
  struct Batch {
    v1::ReportRequest request;
    std::vector<std::string> files;
  };
  Batch Next(int max_reports, int64_t max_bytes);
  void Remove(const std::vector<std::string>& files);

  size_t size();

 private:
  std::string QueuePath(int64_t seq) const;
  std::vector<std::string> Files() const;
  void Trim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const int64_t max_reports_;
  absl::Mutex mu_;
  int64_t seq_ ABSL_GUARDED_BY(mu_) = 0;  // last used
};

// A state message of the agent (topic "agent.started", severity 0 info, 1
// warning, 2 error; the text cut to 4,000 bytes), stamped now.
v1::ClientReport StateReport(const std::string& topic, int severity, const std::string& text);

}  // namespace strata::agent
