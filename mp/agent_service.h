#pragma once

// The management point's service to agents (ManagementPoint, gRPC's
// callback API: no thread per call or stream): registration (forwarded to
// the site), service location and policy (from the site bundle and the
// client's custom settings), reports (acknowledged once spooled durably).
// Every call but Register needs an agent certificate whose client the
// directory allows. Agents are told to check in over the nudge channel
// (nudge_server.h), whose address Locate hands out.

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "mp/client_directory.h"
#include "mp/register_limit.h"
#include "mp/site_client.h"
#include "mp/spool.h"
#include "strata/v1/client.grpc.pb.h"

namespace strata::mp {

class AgentService final : public v1::ManagementPoint::CallbackService {
 public:
  AgentService(SiteClient& site, ClientDirectory& directory, Spool& spool,
               RegisterLimit& register_limit);

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* context,
                                   const v1::LocateRequest* request,
                                   v1::ServiceLocation* response) override;
  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* context,
                                      const v1::PolicyRequest* request,
                                      v1::PolicyResponse* response) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context,
                                   const v1::ReportRequest* request,
                                   v1::ReportResponse* response) override;
  grpc::ServerUnaryReactor* GetContent(grpc::CallbackServerContext* context,
                                       const v1::ContentRequest* request,
                                       v1::ContentLocation* response) override;
  // Forwarded to the site with the caller's id (the site takes states only
  // from the worker holding a job).
  grpc::ServerUnaryReactor* RunbookWork(grpc::CallbackServerContext* context,
                                        const v1::RunbookWorkRequest* request,
                                        v1::RunbookWorkResponse* response) override;

  // What agents are told this MP is, and where its nudge channel listens.
  void set_addresses(const std::string& public_address, const std::string& nudge_address);

  // The checks a report request passes before it is spooled: at most 1,000
  // reports, each valid (common/inventory), for the caller only, in
  // increasing sequence.
  static absl::Status CheckReports(const v1::ReportRequest& request, const std::string& id);
  // Checks `id`'s reports and spools them: `done` (on the spool's thread)
  // with the last seq once durable, or the refusal. The gRPC Report and the
  // nudge channel's reports both come here.
  void Accept(const std::string& id, const v1::ReportRequest& request,
              std::function<void(absl::StatusOr<int64_t>)> done);

 private:
  // Runs `body` once the caller is known to be an allowed agent; otherwise
  // finishes the call with the reason.
  template <typename Body>
  grpc::ServerUnaryReactor* WithClient(grpc::CallbackServerContext* context, Body body);

  SiteClient& site_;
  ClientDirectory& directory_;
  Spool& spool_;
  RegisterLimit& register_limit_;
  absl::Mutex mu_;
  std::string public_address_ ABSL_GUARDED_BY(mu_);
  std::string nudge_address_ ABSL_GUARDED_BY(mu_);
};

// The agent id a caller's certificate names (OU=agent, CN=<uuid>), or why not.
absl::StatusOr<std::string> AgentId(const grpc::ServerContextBase& context);

}  // namespace strata::mp
