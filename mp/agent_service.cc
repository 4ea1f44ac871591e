#include "mp/agent_service.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/inventory/report_check.h"
#include "common/net/tls.h"
#include "common/policy/client_settings.h"
#include "mp/locate.h"

namespace strata::mp {
namespace {

constexpr int kMaxReportsPerRequest = 1000;

grpc::Status NoBundle() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "the management point has no policy from its site server yet");
}

}  // namespace

absl::StatusOr<std::string> AgentId(const grpc::ServerContextBase& context) {
  ASSIGN_OR_RETURN(PeerIdentity peer, PeerFromContext(context));
  if (peer.role != "agent" || !inventory::IsUuid(peer.name)) {
    return absl::PermissionDeniedError(
        absl::StrCat("only registered agents may call this; the certificate is ", peer.ToString()));
  }
  return peer.name;
}

AgentService::AgentService(SiteClient& site, ClientDirectory& directory, Spool& spool,
                           RegisterLimit& register_limit)
    : site_(site), directory_(directory), spool_(spool), register_limit_(register_limit) {}

template <typename Body>
grpc::ServerUnaryReactor* AgentService::WithClient(grpc::CallbackServerContext* context,
                                                   Body body) {
  auto* reactor = context->DefaultReactor();
  auto id = AgentId(*context);
  if (!id.ok()) {
    reactor->Finish(ToGrpcStatus(id.status()));
    return reactor;
  }
  directory_.Check(*id, [reactor, body, id = *id](absl::Status s) mutable {
    if (!s.ok()) {
      reactor->Finish(ToGrpcStatus(s));
    } else {
      body(reactor, id);
    }
  });
  return reactor;
}

void AgentService::set_addresses(const std::string& public_address,
                                 const std::string& nudge_address) {
  absl::MutexLock lock(&mu_);
  public_address_ = public_address;
  nudge_address_ = nudge_address;
}

grpc::ServerUnaryReactor* AgentService::Register(grpc::CallbackServerContext* context,
                                                 const v1::RegisterRequest* request,
                                                 v1::RegisterResponse* response) {
  auto* reactor = context->DefaultReactor();
  // Each registration costs the site a signature and a transaction: a
  // source (or a whole fleet) re-registering in a loop is slowed down here.
  if (absl::Status limited = register_limit_.Take(SourceOf(context->peer())); !limited.ok()) {
    reactor->Finish(ToGrpcStatus(limited));
    return reactor;
  }
  // Registration is the one call an agent makes before it has a
  // certificate; the site decides (token / approval) and signs. Not allowed
  // here yet: its first call looks it up, custom client settings included.
  site_.Register(request, response, [reactor](grpc::Status s) {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      s = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       "the site server cannot be reached: " + s.error_message());
    }
    reactor->Finish(s);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Locate(grpc::CallbackServerContext* context,
                                               const v1::LocateRequest* request,
                                               v1::ServiceLocation* response) {
  return WithClient(
      context, [this, context, request, response](grpc::ServerUnaryReactor* r, const std::string&) {
        std::vector<std::string> ips;
        for (const auto& ip : request->ip_addresses()) {
          if (ips.size() < 256) ips.push_back(ip);
        }
        // The address the call came from counts too (not a unix socket's).
        if (std::string source = SourceOf(context->peer()); source != "local") {
          ips.push_back(source);
        }
        auto bundle = directory_.bundle();
        if (!bundle) {
          r->Finish(NoBundle());
          return;
        }
        std::string own, nudge;
        {
          absl::MutexLock lock(&mu_);
          own = public_address_;
          nudge = nudge_address_;
        }
        *response = mp::Locate(*bundle, ips, own);
        response->set_nudge_address(nudge);
        r->Finish(grpc::Status::OK);
      });
}

grpc::ServerUnaryReactor* AgentService::GetContent(grpc::CallbackServerContext* context,
                                                   const v1::ContentRequest* request,
                                                   v1::ContentLocation* response) {
  return WithClient(
      context, [this, context, request, response](grpc::ServerUnaryReactor* r, const std::string&) {
        auto bundle = directory_.bundle();
        if (!bundle) {
          r->Finish(NoBundle());
          return;
        }
        std::vector<std::string> ips;
        for (const auto& ip : request->ip_addresses())
          if (ips.size() < 256) ips.push_back(ip);
        if (std::string source = SourceOf(context->peer()); source != "local")
          ips.push_back(source);
        std::string own;
        {
          absl::MutexLock lock(&mu_);
          own = public_address_;
        }
        v1::ServiceLocation where = mp::Locate(*bundle, ips, own);
        auto req = std::make_shared<v1::ContentManifestRequest>();
        req->set_package(request->package());
        req->set_version(request->version());
        auto resp = std::make_shared<v1::ContentManifestResponse>();
        site_.GetContentManifest(
            req.get(), resp.get(), [r, req, resp, response, where, bundle](grpc::Status s) {
              if (!s.ok()) {
                r->Finish(s);
                return;
              }
              *response->mutable_manifest() = std::move(*resp->mutable_manifest());
              // The located DPs that report holding it first, then the others.
              std::set<std::string> holding;
              for (const auto& name : resp->installed_at())
                for (const auto& sys : bundle->systems())
                  if (sys.role() == "dp" && sys.name() == name) holding.insert(sys.address());
              for (bool held : {true, false})
                for (const auto& dp : where.distribution_points())
                  if ((holding.count(dp) > 0) == held) response->add_distribution_points(dp);
              r->Finish(grpc::Status::OK);
            });
      });
}

grpc::ServerUnaryReactor* AgentService::RunbookWork(grpc::CallbackServerContext* context,
                                                    const v1::RunbookWorkRequest* request,
                                                    v1::RunbookWorkResponse* response) {
  return WithClient(
      context, [this, request, response](grpc::ServerUnaryReactor* r, const std::string& id) {
        auto req = std::make_shared<v1::RunbookWorkRequest>(*request);
        req->set_client_id(id);
        site_.RunbookWork(req.get(), response, [r, req](grpc::Status s) { r->Finish(s); });
      });
}

grpc::ServerUnaryReactor* AgentService::GetPolicy(grpc::CallbackServerContext* context,
                                                  const v1::PolicyRequest* request,
                                                  v1::PolicyResponse* response) {
  return WithClient(
      context, [this, request, response](grpc::ServerUnaryReactor* r, const std::string& id) {
        auto bundle = directory_.bundle();
        if (!bundle) {
          r->Finish(NoBundle());
          return;
        }
        bool full = directory_.TakeFullRequest(id);
        if (!directory_.IsAllowed(id) && !request->current_version().empty()) {
          // Accepted while the site is away: which custom settings reach it
          // is unknown here, so it keeps what it has.
          response->set_not_modified(true);
          response->set_version(request->current_version());
          response->set_full_inventory_requested(full);
          r->Finish(grpc::Status::OK);
          return;
        }
        v1::PolicyResponse policy = policy::ClientPolicy(*bundle, directory_.AssignedTo(id));
        if (!full && request->current_version() == policy.version()) {
          response->set_version(policy.version());
          response->set_not_modified(true);
        } else {
          *response = std::move(policy);
          response->set_full_inventory_requested(full);
        }
        r->Finish(grpc::Status::OK);
      });
}

absl::Status AgentService::CheckReports(const v1::ReportRequest& request, const std::string& id) {
  if (request.reports_size() == 0) return absl::InvalidArgumentError("no reports");
  if (request.reports_size() > kMaxReportsPerRequest) {
    return absl::InvalidArgumentError(absl::StrCat(
        request.reports_size(), " reports in one request; at most ", kMaxReportsPerRequest));
  }
  int64_t prev = 0;
  for (const auto& report : request.reports()) {
    if (!report.client_id().empty() && report.client_id() != id) {
      return absl::PermissionDeniedError(
          absl::StrCat("an agent reports only for itself: the certificate names ", id,
                       ", the report names ", report.client_id()));
    }
    if (absl::Status s = inventory::CheckReport(report); !s.ok()) {
      return Annotate(s, absl::StrCat("report ", report.seq()));
    }
    if (report.seq() <= prev) {
      return absl::InvalidArgumentError("reports must be in increasing seq order");
    }
    prev = report.seq();
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AgentService::Report(grpc::CallbackServerContext* context,
                                               const v1::ReportRequest* request,
                                               v1::ReportResponse* response) {
  return WithClient(context,
                    [this, request, response](grpc::ServerUnaryReactor* r, const std::string& id) {
                      Accept(id, *request, [r, response](absl::StatusOr<int64_t> acked) {
                        if (acked.ok()) response->set_acknowledged_through_seq(*acked);
                        r->Finish(ToGrpcStatus(acked.status()));
                      });
                    });
}

void AgentService::Accept(const std::string& id, const v1::ReportRequest& request,
                          std::function<void(absl::StatusOr<int64_t>)> done) {
  absl::Status s = CheckReports(request, id);
  if (!s.ok()) {
    LogWarning("mp.report_refused", {{"client", id}, {"error", s}});
    done(s);
    return;
  }
  std::vector<std::string> records;
  records.reserve(request.reports_size());
  for (const auto& report : request.reports()) {
    v1::ClientReport copy = report;
    copy.set_client_id(id);
    records.push_back(copy.SerializeAsString());
  }
  const int64_t last = request.reports(request.reports_size() - 1).seq();
  spool_.Append(std::move(records), [done = std::move(done), last](absl::Status s, int64_t) {
    if (s.ok()) {
      done(last);
    } else {
      done(s);
    }
  });
}

}  // namespace strata::mp
