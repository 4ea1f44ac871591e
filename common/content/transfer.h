#pragma once

// Moving content into a library over one link: a source of blobs (the
// parent site's or the DP's site server over gRPC; a source DP over HTTPS),
// the link's rate limit and hours (Configuration Manager's per-link
// schedule), and bringing a whole version in, resuming each blob where an
// earlier attempt stopped. Shared by site servers and distribution points.

#include <bitset>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/content/library.h"
#include "grpcpp/channel.h"
#include "strata/v1/config.pb.h"

namespace strata::content {

// Hours of the day a link may move content: "0-6,20-23", "22", "" (any).
class TransferHours {
 public:
  static absl::StatusOr<TransferHours> Parse(const std::string& text);
  bool Allows(absl::Time t) const;  // local time
  bool any() const { return all_; }

 private:
  std::bitset<24> hours_;
  bool all_ = true;
};

// A byte-rate limit over one link (0 = none): Take() sleeps so that the
// bytes taken keep within the rate, in bursts of at most a second's worth.
class RateLimiter {
 public:
  explicit RateLimiter(int64_t bytes_per_second) : rate_(bytes_per_second) {}
  // Returns false if `stop` was notified while waiting.
  bool Take(int64_t bytes, absl::Notification* stop);
  // A new rate (an admin changed the link), from the next Take on.
  void SetRate(int64_t bytes_per_second) {
    absl::MutexLock lock(&mu_);
    rate_ = bytes_per_second;
  }

 private:
  absl::Mutex mu_;
  int64_t rate_ ABSL_GUARDED_BY(mu_);
  absl::Time next_free_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Where blobs come from.
class BlobSource {
 public:
  virtual ~BlobSource() = default;
  // Writes the bytes of `blob` from `writer->offset()` on into `writer`
  // (not finishing it), calling `chunk(bytes)` after each piece; a false
  // return stops the fetch (Cancelled). NotFound if the source does not
  // hold the blob (yet).
  virtual absl::Status Fetch(const BlobRef& blob, BlobWriter& writer,
                             const std::function<bool(int64_t)>& chunk) = 0;
  virtual std::string name() const = 0;
};

// Counts the bytes another source delivers (what a link carried).
class CountingSource final : public BlobSource {
 public:
  explicit CountingSource(BlobSource& inner) : inner_(inner) {}
  absl::Status Fetch(const BlobRef& blob, BlobWriter& writer,
                     const std::function<bool(int64_t)>& chunk) override {
    return inner_.Fetch(blob, writer, [&](int64_t n) {
      bytes += n;
      return chunk(n);
    });
  }
  std::string name() const override { return inner_.name(); }
  int64_t bytes = 0;

 private:
  BlobSource& inner_;
};

// A site server's ContentLibrary service.
std::unique_ptr<BlobSource> GrpcBlobSource(std::shared_ptr<grpc::Channel> channel,
                                           std::string name);

// Progress of bringing a version in.
struct Progress {
  int64_t bytes_done = 0;  // of the version's distinct blobs, present ones included
  int64_t bytes_total = 0;
};

// Brings every blob of `manifest` the library lacks from `source`, in
// order, resuming parts, under `limiter` and `hours`, then holds the
// version. `progress` is called as bytes arrive (at most every 500 ms) and
// at the end. Unavailable when outside the link's hours (nothing lost: the
// next call resumes), Cancelled when `stop` is notified, a source's error
// otherwise.
absl::Status BringVersion(const v1::ContentManifest& manifest, Library& library, BlobSource& source,
                          RateLimiter& limiter, const TransferHours& hours,
                          absl::Notification* stop,
                          const std::function<void(const Progress&)>& progress);

}  // namespace strata::content
