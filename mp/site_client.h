#pragma once

// What the management point asks of its site server (service SiteClients),
// behind an interface so that the MP's parts can be tested with a fake site.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/policy/client_settings.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"
#include "strata/v1/client.pb.h"

namespace strata::mp {

// One Connect stream: hello, batches and status up; bundle, assignments,
// requests, acknowledgements down. Write may be called from two threads;
// Read from one.
class SiteStream {
 public:
  virtual ~SiteStream() = default;
  virtual bool Write(const v1::MpUp& m) = 0;
  virtual bool Read(v1::MpDown* m) = 0;
  // Ends the stream from any thread (Read and Write then fail).
  virtual void Cancel() = 0;
  // After Read failed: how the stream ended.
  virtual absl::Status Finish() = 0;
};

// Allowed clients (of those asked about), each with its custom settings
// (sorted names; empty: the default only).
using Allowed = std::map<std::string, policy::Assigned>;

class SiteClient {
 public:
  virtual ~SiteClient() = default;
  // Forwards a registration; `done` runs on another thread when the site
  // answered (or did not).
  virtual void Register(const v1::RegisterRequest* req, v1::RegisterResponse* resp,
                        std::function<void(grpc::Status)> done) = 0;
  // Which of `ids` may use the MP (at most 5,000 per call are sent; more are
  // split).
  virtual absl::StatusOr<Allowed> LookupClients(const std::vector<std::string>& ids) = 0;
  // A new Connect stream.
  virtual std::unique_ptr<SiteStream> Connect() = 0;
  // A content version's manifest and the DPs holding it; `done` runs on
  // another thread.
  virtual void GetContentManifest(const v1::ContentManifestRequest* req,
                                  v1::ContentManifestResponse* resp,
                                  std::function<void(grpc::Status)> done) = 0;
  // A runbook worker's exchange (req->client_id() set); `done` runs on
  // another thread.
  virtual void RunbookWork(const v1::RunbookWorkRequest* req, v1::RunbookWorkResponse* resp,
                           std::function<void(grpc::Status)> done) = 0;
};

// The real one, over `channel` (mutual TLS to the site server).
std::unique_ptr<SiteClient> MakeSiteClient(std::shared_ptr<grpc::Channel> channel);

}  // namespace strata::mp
