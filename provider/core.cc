#include "provider/core.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/net/tls.h"
#include "provider/input.h"

namespace strata::provider {

bool Caller::HoldsScope(const std::string& scope) const {
  return std::count(scopes.begin(), scopes.end(), scope) > 0;
}

bool Caller::HoldsCollection(const std::string& collection) const {
  return std::count(collections.begin(), collections.end(), collection) > 0;
}

absl::Status WriteAudit(Transaction& tx, const std::string& site, const AuditEntry& e) {
  return tx
      .Exec(
          "INSERT INTO audit_log (site_code, admin, action, object_type, object_name, outcome, "
          "summary) VALUES ($1, $2, $3, $4, $5, $6, $7)",
          {site, e.admin, e.action, e.object_type, e.object_name, e.outcome,
           Truncated(e.summary, 8192)})
      .status();
}

absl::Status Call::Audit(const std::string& action, const std::string& object_type,
                         const std::string& object_name, const std::string& summary) {
  LogInfo(
      "provider.change",
      {{"admin", caller.name}, {"action", action}, {"object", object_type}, {"name", object_name}});
  return WriteAudit(tx, core_.site(),
                    AuditEntry{caller.name, action, object_type, object_name, "ok", summary});
}

absl::Status Call::Require(absl::string_view permission, const std::string& object_type,
                           const std::string& object_name) const {
  if (!core_.IsKnown(permission)) {
    return absl::InternalError(
        absl::StrCat("permission ", permission, " is not declared by any resource"));
  }
  if (caller.Has(permission)) return absl::OkStatus();
  return CallCore::Deny(caller, permission, object_type, object_name);
}

const std::string& Call::site() const { return core_.site(); }

CallCore::CallCore(store::ConnectionPool& pool, std::string site,
                   std::vector<std::string> known_permissions)
    : pool_(pool), site_(std::move(site)), known_permissions_(std::move(known_permissions)) {}

bool CallCore::IsKnown(absl::string_view permission) const {
  return std::find(known_permissions_.begin(), known_permissions_.end(), permission) !=
         known_permissions_.end();
}

absl::Status CallCore::Deny(const Caller& c, absl::string_view permission,
                            const std::string& object_type, const std::string& object_name) {
  return absl::PermissionDeniedError(absl::StrCat(
      c.name, " lacks the permission ", permission,
      object_name.empty() ? "" : absl::StrCat(" on ", object_type, " \"", object_name, "\""),
      " (roles: ", absl::StrJoin(c.roles, ", "), ")"));
}

grpc::Status CallCore::Run(const grpc::ServerContextBase& ctx, absl::string_view method,
                           absl::string_view permission, const Handler& fn) {
  return Execute(ctx, method, permission, fn, nullptr);
}

grpc::Status CallCore::RunAudited(const grpc::ServerContextBase& ctx, absl::string_view method,
                                  absl::string_view permission, const std::string& object_type,
                                  const std::string& object_name, const Handler& fn) {
  AuditEntry object;
  object.object_type = object_type;
  object.object_name = object_name;
  return Execute(ctx, method, permission, fn, &object);
}

std::vector<int64_t> CallCore::CallsByCode() const {
  std::vector<int64_t> out;
  for (const auto& n : calls_by_code_) out.push_back(n.load(std::memory_order_relaxed));
  return out;
}

grpc::Status CallCore::Execute(const grpc::ServerContextBase& ctx, absl::string_view method,
                               absl::string_view permission, const Handler& fn,
                               const AuditEntry* object) {
  grpc::Status answer = Answer(ctx, method, permission, fn, object);
  const size_t code = static_cast<size_t>(answer.error_code());
  if (code < calls_by_code_.size()) calls_by_code_[code].fetch_add(1, std::memory_order_relaxed);
  return answer;
}

grpc::Status CallCore::Answer(const grpc::ServerContextBase& ctx, absl::string_view method,
                              absl::string_view permission, const Handler& fn,
                              const AuditEntry* object) {
  absl::StatusOr<PeerIdentity> peer = PeerFromContext(ctx);
  if (!peer.ok()) {
    AuditRefusal("(no certificate)", method, peer.status(), /*limited=*/true);
    return ToGrpcStatus(peer.status());
  }
  if (peer->role != "admin") {
    absl::Status s = absl::PermissionDeniedError(
        absl::StrCat("the admin API takes administrators' certificates (OU=admin); this one is ",
                     peer->ToString()));
    AuditRefusal(peer->ToString(), method, s, /*limited=*/true);
    return ToGrpcStatus(s);
  }
  absl::Status s = pool_.With([&](store::Connection& conn) {
    return conn.Transact([&](Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(Caller caller, LoadCaller(tx, peer->name));
      Call call(*this, tx, caller);
      if (!permission.empty()) RETURN_IF_ERROR(call.Require(permission));
      return fn(call);
    });
  });
  if (absl::IsPermissionDenied(s) || absl::IsUnauthenticated(s) ||
      (object != nullptr && !s.ok() && s.code() != absl::StatusCode::kUnavailable &&
       s.code() != absl::StatusCode::kInternal)) {
    AuditRefusal(peer->name, method, s, /*limited=*/false, object);
  } else if (!s.ok() && s.code() != absl::StatusCode::kInvalidArgument &&
             s.code() != absl::StatusCode::kNotFound &&
             s.code() != absl::StatusCode::kAlreadyExists &&
             s.code() != absl::StatusCode::kFailedPrecondition) {
    LogWarning("provider.call_failed",
               {{"admin", peer->name}, {"method", std::string(method)}, {"error", s}});
  }
  return ToGrpcStatus(s);
}

bool CallCore::TakeAuditBudget(const std::string& who) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&audit_mu_);
  if (now - minute_start_ >= absl::Minutes(1)) {
    minute_start_ = now;
    in_minute_ = 0;
  }
  auto it = audited_at_.find(who);
  if (in_minute_ >= 60 || (it != audited_at_.end() && now - it->second < absl::Minutes(1))) {
    return false;
  }
  if (audited_at_.size() >= 10000) audited_at_.clear();
  audited_at_[who] = now;
  ++in_minute_;
  return true;
}

void CallCore::AuditRefusal(const std::string& who, absl::string_view method,
                            const absl::Status& status, bool limited, const AuditEntry* object) {
  const bool audit = !limited || TakeAuditBudget(who);
  LogInfo("provider.denied",
          {{"admin", who}, {"method", std::string(method)}, {"error", status}, {"audited", audit}});
  if (!audit) return;
  absl::Status a = pool_.With([&](store::Connection& conn) {
    return conn.Transact([&](Transaction& tx) -> absl::Status {
      return WriteAudit(
          tx, site_,
          AuditEntry{who, std::string(method), object ? object->object_type : "",
                     object ? object->object_name : "", "denied", std::string(status.message())});
    });
  });
  if (!a.ok()) LogWarning("provider.audit_failed", {{"error", a}});
}

absl::StatusOr<Caller> CallCore::LoadCaller(Transaction& tx, const std::string& name) {
  ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT roles::text, scopes::text, collections::text FROM "
                                     "administrators WHERE name = $1",
                                     {name}));
  if (r.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat(name,
                     " is not an administrator of this hierarchy (a Full Administrator adds them "
                     "with `stratactl set admin`)"));
  }
  Caller c;
  c.name = name;
  c.roles = store::ParseTextArray(r.GetString(0, 0));
  c.scopes = store::ParseTextArray(r.GetString(0, 1));
  c.collections = store::ParseTextArray(r.GetString(0, 2));
  c.all_scopes = c.HoldsScope("All");
  ASSIGN_OR_RETURN(Result p, tx.Exec("SELECT DISTINCT unnest(permissions) FROM security_roles "
                                     "WHERE name = ANY($1::text[])",
                                     {store::TextArrayLiteral(c.roles)}));
  for (size_t i = 0; i < p.size(); ++i) c.permissions.insert(p.GetString(i, 0));
  return c;
}

}  // namespace strata::provider
