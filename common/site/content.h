#pragma once

// A site server's content: its library (common/content), the ContentLibrary
// service it offers its child sites, distribution points and providers, and
// the content manager that keeps the library holding the newest version of
// every package (global data), taking missing blobs from the parent site
// under the link's rate and hours, and recording the site's state of each
// version in content_site_status (site data: the CAS sees every site's).
//
// Start() once; Stop() joins the manager. The services are thread-safe.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "common/content/library.h"
#include "common/site/dp_link.h"
#include "grpcpp/impl/service_type.h"
#include "strata/v1/config.pb.h"

namespace strata::site {

class SiteContent {
 public:
  // `config.content_library` empty: the site holds no content; the service
  // answers FailedPrecondition saying so.
  SiteContent(const v1::SiteServerConfig& config, v1::SiteType type);
  ~SiteContent();

  // Opens the library (InvalidArgument / Internal naming the folder).
  absl::Status Open();
  // The ContentLibrary and DistributionPointLink services.
  std::vector<grpc::Service*> services();
  // Starts the content manager (if the site keeps a library).
  void Start();
  void Stop();

  content::Library* library() { return library_.get(); }

 private:
  class Service;
  void ManagerLoop();

  const v1::SiteServerConfig& config_;
  const v1::SiteType type_;
  std::unique_ptr<content::Library> library_;
  std::unique_ptr<Service> service_;
  ContentChanges changes_;
  std::unique_ptr<grpc::Service> dp_link_;
  absl::Notification stop_;
  std::thread manager_;
};

}  // namespace strata::site
