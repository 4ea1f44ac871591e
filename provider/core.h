#pragma once

// The provider's call core, shared by every resource (provider/resources/):
// who the caller is (the administrator a certificate names, with what their
// roles grant), running one admin call in one transaction after its
// permission check, and the audit log.
//
// Every refusal is on record: a PermissionDenied from any step (a
// certificate that is not an administrator's, an administrator unknown
// here, a missing permission, RBAC containment) rolls the call's
// transaction back and is audited in a transaction of its own, and logged.
// Refusals of certificates that are not administrators' (any agent holds
// one from the hierarchy's CA) are audited at most once a minute per
// identity and 60 times a minute in all, so that they cannot flood the
// audit log (site data, replicated to the CAS); every one is logged.
//
// Thread-safe: gRPC's handler threads call Run() concurrently.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/store/database.h"
#include "common/store/pool.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace strata::provider {

using store::Result;
using store::Transaction;

// A permission a security role can grant, "object.operation", declared by
// the resource whose calls check it (provider/resource.h).
struct Permission {
  const char* name;
  const char* description;
};

// The caller, as RBAC sees them.
struct Caller {
  std::string name;
  std::vector<std::string> roles, scopes, collections;
  std::set<std::string> permissions;
  bool all_scopes = false;  // holds the "All" scope

  bool Has(absl::string_view permission) const {
    return permissions.count("*") > 0 || permissions.count(std::string(permission)) > 0;
  }
  bool HoldsScope(const std::string& scope) const;
  bool HoldsCollection(const std::string& collection) const;
  // Holders of All Systems see every device.
  bool SeesAllDevices() const { return HoldsCollection("All Systems"); }
};

// One audit log row (site data: it reaches the CAS).
struct AuditEntry {
  std::string admin;
  std::string action;
  std::string object_type;
  std::string object_name;
  std::string outcome = "ok";  // ok, denied
  std::string summary;         // cut to 8 KiB
};

// The one writer of audit_log rows, for `site`.
absl::Status WriteAudit(Transaction& tx, const std::string& site, const AuditEntry& entry);

class CallCore;

// One admin call in flight: its transaction, its caller, and what a handler
// needs besides its own SQL.
class Call {
 public:
  Call(CallCore& core, Transaction& tx, const Caller& caller)
      : tx(tx), caller(caller), core_(core) {}

  Transaction& tx;
  const Caller& caller;

  // Records a change in the audit log, in the call's transaction.
  absl::Status Audit(const std::string& action, const std::string& object_type,
                     const std::string& object_name, const std::string& summary);
  // OK if the caller holds `permission`, else the PermissionDenied that
  // names it (and the object, when given).
  absl::Status Require(absl::string_view permission, const std::string& object_type = "",
                       const std::string& object_name = "") const;
  const std::string& site() const;

 private:
  CallCore& core_;
};

class CallCore {
 public:
  // `known_permissions`: every permission a resource declares; a handler
  // checking another one is a programming error (Internal).
  CallCore(store::ConnectionPool& pool, std::string site,
           std::vector<std::string> known_permissions);

  using Handler = std::function<absl::Status(Call&)>;

  // Identifies the caller from its certificate, checks `permission` (empty:
  // none, the handler decides), and runs `fn` in one transaction (retried
  // whole on a serialization failure, so `fn` must start its answer over).
  grpc::Status Run(const grpc::ServerContextBase& ctx, absl::string_view method,
                   absl::string_view permission, const Handler& fn);
  // As Run, and every refusal (bad input, a failed precondition, a missing
  // permission) is audited with the object it concerned: what was tried on
  // devices (running scripts, approving them) leaves a trail even when it
  // was refused.
  grpc::Status RunAudited(const grpc::ServerContextBase& ctx, absl::string_view method,
                          absl::string_view permission, const std::string& object_type,
                          const std::string& object_name, const Handler& fn);

  // A PermissionDenied naming what `caller` lacks.
  static absl::Status Deny(const Caller& caller, absl::string_view permission,
                           const std::string& object_type, const std::string& object_name);

  const std::string& site() const { return site_; }
  store::ConnectionPool& pool() { return pool_; }
  bool IsKnown(absl::string_view permission) const;
  // Calls answered since start, by gRPC status code (0 OK .. 16), for the
  // metrics endpoint.
  std::vector<int64_t> CallsByCode() const;

 private:
  absl::StatusOr<Caller> LoadCaller(Transaction& tx, const std::string& name);
  // `object`: audit every refusal, naming it (RunAudited).
  grpc::Status Execute(const grpc::ServerContextBase& ctx, absl::string_view method,
                       absl::string_view permission, const Handler& fn, const AuditEntry* object);
  // Execute's work; Execute counts its answer.
  grpc::Status Answer(const grpc::ServerContextBase& ctx, absl::string_view method,
                      absl::string_view permission, const Handler& fn, const AuditEntry* object);
  // `limited`: a caller that is not an administrator (see the header).
  void AuditRefusal(const std::string& who, absl::string_view method, const absl::Status& status,
                    bool limited, const AuditEntry* object = nullptr);
  bool TakeAuditBudget(const std::string& who);

  store::ConnectionPool& pool_;
  const std::string site_;
  const std::vector<std::string> known_permissions_;

  std::array<std::atomic<int64_t>, 17> calls_by_code_{};

  absl::Mutex audit_mu_;
  // Non-administrators' refusals audited: when, by identity (cleared when
  // it grows past 10,000), and how many in the current minute.
  std::map<std::string, absl::Time> audited_at_ ABSL_GUARDED_BY(audit_mu_);
  absl::Time minute_start_ ABSL_GUARDED_BY(audit_mu_) = absl::InfinitePast();
  int in_minute_ ABSL_GUARDED_BY(audit_mu_) = 0;
};

}  // namespace strata::provider
