#pragma once

// A management point's link to its site server: one Connect stream at a
// time, reconnected with backoff. Up: a hello, the spool's reports in
// batches (at most two unacknowledged), and the MP's status every status
// interval (sooner, at most every 5 s, when the clients it holds changed). Down: the site bundle,
// clients' custom settings, requests for a client (full inventory), clients whose approval changed,
// and acknowledgements, after which the spool drops what the site committed.
//
// Start() runs the link on its own thread; Stop() ends it. The handlers run
// on the link's reader thread, one at a time.

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mp/client_directory.h"
#include "mp/site_client.h"
#include "mp/spool.h"

namespace strata::mp {

struct UplinkOptions {
  v1::MpHello hello;         // name, address, version
  std::string site_address;  // for logs
  int batch_max_reports = 500;
  int64_t batch_max_bytes = 4 << 20;
  int max_batches_in_flight = 2;
  absl::Duration status_every = absl::Seconds(60);
};

struct UplinkHandlers {
  // A bundle; `first` for the first of each stream (the site registered the
  // stream before sending it: whatever changed while there was none must be
  // looked up again).
  std::function<void(const v1::SiteBundle& bundle, bool first)> bundle;
  std::function<void(const std::vector<Assignment>& changes)> assignments;
  std::function<void(const v1::ClientRequest& request)> request;
  std::function<void(const std::vector<std::string>& ids)> access_changed;
  // For the status: clients holding a stream.
  std::function<int64_t()> clients_connected;
  // Whether presence changed, and into a status: the changes (or, `full`,
  // every client held now).
  std::function<bool()> presence_pending;
  std::function<void(v1::MpStatus* status, bool full)> presence;
};

class SiteUplink {
 public:
  SiteUplink(SiteClient& site, Spool& spool, UplinkOptions options, UplinkHandlers handlers);
  ~SiteUplink();

  void Start();
  void Stop();
  // Whether a stream to the site is open now (metrics).
  bool connected() {
    absl::MutexLock lock(&mu_);
    return stream_ != nullptr;
  }

 private:
  void Loop();
  // One stream, until it breaks or Stop().
  absl::Status RunStream();
  void Dispatch(const v1::MpDown& m, bool* bundle_seen);
  bool stopping() const { return stopping_.HasBeenNotified(); }

  SiteClient& site_;
  Spool& spool_;
  const UplinkOptions options_;
  const UplinkHandlers handlers_;
  std::thread thread_;
  absl::Notification stopping_;
  absl::Mutex mu_;
  SiteStream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;  // the current one, to cancel
};

}  // namespace strata::mp
