#pragma once

// The site server's side of its distribution points (DistributionPointLink):
// a DP opens an assignment stream (what it should hold, sent again whenever
// it changes) and reports its content state, which this site records as
// site data (content_status, content_validation_failures with the DP's
// name as location; site_systems with role 'dp'). A CAS refuses DPs.
//
// Thread-safe: gRPC's handler threads call it.

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/impl/service_type.h"
#include "strata/v1/site_link.pb.h"

namespace strata::site {

// A generation counter that content changes bump (packages, distributions,
// validation requests: NOTIFY strata_content), for streams to wait on.
class ContentChanges {
 public:
  void Bump();
  // Waits until the generation is not `seen`, or `timeout`; returns it.
  int64_t Wait(int64_t seen, absl::Duration timeout);
  int64_t generation();

 private:
  absl::Mutex mu_;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

struct DpLinkOptions {
  std::string site_code;
  v1::SiteType site_type = v1::SITE_TYPE_UNSPECIFIED;
  std::string conninfo;
  bool has_library = false;
  ContentChanges* changes = nullptr;
  const absl::Notification* stopping = nullptr;  // notified when the site stops
};

std::unique_ptr<grpc::Service> MakeDpLinkService(DpLinkOptions options);

}  // namespace strata::site
