#pragma once

// Which clients hold a nudge channel, as the MP tells its site server (so
// that a live query can count who is offline): the changes since it last
// told, or (at the start of a stream) everyone held now.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "strata/v1/client.pb.h"

namespace strata::mp {

class Presence {
 public:
  // A client's channel was welcomed (true) or ended (false).
  void Set(const std::string& id, bool online);
  // Whether anything changed since the last Take.
  bool Pending();
  // Into `status`: the changes since the last Take; with `full`, `held()`
  // (every client held now, asked after the changes are taken) instead.
  void Take(v1::MpStatus* status, bool full, const std::function<std::vector<std::string>()>& held);

 private:
  absl::Mutex mu_;
  std::map<std::string, bool> changes_ ABSL_GUARDED_BY(mu_);  // the last word per client
};

}  // namespace strata::mp
