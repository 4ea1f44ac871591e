#pragma once

// The management point's durable spool of client data: append-only segment
// files of checksummed records, each with a sequence number. An append is
// acknowledged (its callback runs) only after the data is on disk (fdatasync);
// concurrent appends share one sync (group commit). Records stay until the
// site server has committed them (Acknowledge), then whole segments go.
// After a crash, a torn tail is cut off at the last whole record.
//
// Thread-safe. Callbacks run on the spool's writer thread.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace strata::mp {

struct SpoolRecord {
  int64_t seq = 0;
  std::string data;
};

class Spool {
 public:
  struct Options {
    int64_t segment_bytes = 16 << 20;
  };
  using Done = std::function<void(absl::Status status, int64_t last_seq)>;

  static absl::StatusOr<std::unique_ptr<Spool>> Open(const std::string& dir, Options options);
  ~Spool();

  // Appends `records` in order; `done` runs once they are durable.
  void Append(std::vector<std::string> records, Done done);

  // Up to `max_records` / about `max_bytes` of records with seq > `after`.
  // Waits up to `wait_ms` for one when there is none.
  absl::StatusOr<std::vector<SpoolRecord>> Read(int64_t after, int max_records, int64_t max_bytes,
                                                int wait_ms);

  // Everything up to `seq` is safe at the site: persist that, drop segments.
  absl::Status Acknowledge(int64_t seq);

  int64_t acknowledged() const;
  int64_t last_seq() const;  // highest durable record
  void Wake();               // ends a waiting Read early (shutdown)

 private:
  struct Segment {
    int64_t first_seq;
    int64_t last_seq;  // first_seq - 1 when empty
    std::string path;
    int64_t bytes;
  };
  struct Pending {
    std::vector<std::string> records;
    Done done;
  };

  Spool(std::string dir, Options options) : dir_(std::move(dir)), options_(options) {}
  absl::Status Recover();
  absl::Status OpenNewSegment(int64_t first_seq);
  void WriterLoop();
  absl::Status WriteBatch(std::deque<Pending>& batch, int64_t* last);

  const std::string dir_;
  const Options options_;

  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int64_t, Segment> segments_ ABSL_GUARDED_BY(mu_);  // by first_seq
  int64_t durable_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acked_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int wake_generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Where the last Read stopped.
  std::string cursor_path_ ABSL_GUARDED_BY(mu_);
  int64_t cursor_seq_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t cursor_offset_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status broken_;  // writer thread only
  int fd_ = -1;          // current segment; writer thread only (after Open)
  std::thread writer_;
};

}  // namespace strata::mp
