#pragma once

// Rate limits on registration at a management point: a token bucket per
// source address and one for all sources (each refills `per_minute` tokens
// a minute and holds at most that many). Registration is the one call an
// agent makes without a certificate, and each costs the site a signature and
// a transaction; beyond the limit the MP answers RESOURCE_EXHAUSTED saying
// when to retry, before the site is asked anything.
//
// Thread-safe.

#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace strata::mp {

class RegisterLimit {
 public:
  // A negative rate: no limit of that kind.
  RegisterLimit(int per_source_per_minute, int total_per_minute);

  // OK and one token taken from both buckets, or ResourceExhausted with
  // the wait in its message ("retry in N s").
  absl::Status Take(const std::string& source) { return TakeAt(source, absl::Now()); }
  absl::Status TakeAt(const std::string& source, absl::Time now);

 private:
  struct Bucket {
    double tokens;
    absl::Time at;
  };
  // Refills `b` up to `now`; the seconds until one token is there.
  static double Refill(Bucket& b, double per_minute, absl::Time now);

  const double per_source_;
  const double total_;
  absl::Mutex mu_;
  Bucket all_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, Bucket> sources_ ABSL_GUARDED_BY(mu_);
};

// The source address of a gRPC peer ("ipv4:10.1.2.3:5555" -> "10.1.2.3",
// "ipv6:[::1]:5555" -> "::1"; a unix socket peer -> "local").
std::string SourceOf(const std::string& grpc_peer);

}  // namespace strata::mp
