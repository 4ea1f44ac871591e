#include "common/site/dp_link.h"

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/net/tls.h"
#include "common/site/content_catalog.h"
#include "common/store/database.h"
#include "strata/v1/content.grpc.pb.h"

namespace strata::site {

void ContentChanges::Bump() {
  absl::MutexLock lock(&mu_);
  ++generation_;
}

int64_t ContentChanges::Wait(int64_t seen, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto changed = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return generation_ != seen; };
  mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
  return generation_;
}

int64_t ContentChanges::generation() {
  absl::MutexLock lock(&mu_);
  return generation_;
}

namespace {

constexpr int kMaxReportedVersions = 10000;
constexpr int kMaxReportedFailures = 10000;
// Each DP stream looks again at least this often, changes or not.
constexpr absl::Duration kRecheck = absl::Seconds(30);

class DpLinkService final : public v1::DistributionPointLink::Service {
 public:
  explicit DpLinkService(DpLinkOptions o) : o_(std::move(o)) {}

  grpc::Status WatchAssignment(grpc::ServerContext* ctx, const v1::DpHello* hello,
                               grpc::ServerWriter<v1::DpAssignment>* out) override {
    if (auto s = Check(*ctx, hello->name()); !s.ok()) {
      LogWarning("dp.refused", {{"dp", hello->name()}, {"error", s}});
      return ToGrpcStatus(s);
    }
    auto conn = store::Connection::Open(o_.conninfo);
    if (!conn.ok()) return ToGrpcStatus(conn.status());
    auto seen = (*conn)->Exec(
        "INSERT INTO site_systems (site_code, role, name, address, version, state) VALUES ($1, "
        "'dp', $2, $3, $4, 'online') ON CONFLICT (site_code, role, name) DO UPDATE SET address = "
        "EXCLUDED.address, version = EXCLUDED.version, state = 'online', last_seen_at = now() "
        "RETURNING last_seen_at::text",
        {o_.site_code, hello->name(), hello->address().substr(0, 1024),
         hello->version().substr(0, 64)});
    if (!seen.ok()) return ToGrpcStatus(seen.status());
    LogInfo("dp.connected", {{"dp", hello->name()}, {"address", hello->address()}});
    std::string sent;
    absl::Status result;
    while (!ctx->IsCancelled() && !o_.stopping->HasBeenNotified()) {
      const int64_t generation = o_.changes->generation();
      auto a = Assignment(**conn, hello->name());
      if (!a.ok()) {
        result = a.status();
        break;
      }
      std::string bytes = a->SerializeAsString();
      if (bytes != sent) {
        if (!out->Write(*a)) break;
        sent = std::move(bytes);
      }
      // Until a change, or the recheck; every second, notice the stream's end.
      for (absl::Time until = absl::Now() + kRecheck;
           absl::Now() < until && !ctx->IsCancelled() && !o_.stopping->HasBeenNotified() &&
           o_.changes->Wait(generation, absl::Seconds(1)) == generation;) {
      }
    }
    (void)(*conn)->Exec(
        "UPDATE site_systems SET state = 'offline', last_seen_at = now() WHERE site_code = $1 "
        "AND role = 'dp' AND name = $2 AND last_seen_at <= $3",
        {o_.site_code, hello->name(), seen->GetString(0, 0)});
    LogInfo("dp.disconnected", {{"dp", hello->name()}});
    return ToGrpcStatus(result);
  }

  grpc::Status ReportContent(grpc::ServerContext* ctx, const v1::DpContentReport* req,
                             v1::DpReportAck*) override {
    if (auto s = Check(*ctx, req->name()); !s.ok()) return ToGrpcStatus(s);
    if (req->versions_size() > kMaxReportedVersions || req->failures_size() > kMaxReportedFailures)
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("a report holds at most ", kMaxReportedVersions, " versions and ",
                       kMaxReportedFailures, " failures")));
    for (const v1::DpVersionState& v : req->versions()) {
      if (v.state() != "queued" && v.state() != "transferring" && v.state() != "installed" &&
          v.state() != "failed")
        return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
            "state \"", v.state().substr(0, 32), "\": queued, transferring, installed or failed")));
    }
    auto conn = store::Connection::Open(o_.conninfo);
    if (!conn.ok()) return ToGrpcStatus(conn.status());
    absl::Status s = (*conn)->Transact([&](store::Transaction& tx) -> absl::Status {
      std::vector<std::string> packages, versions;
      for (const v1::DpVersionState& v : req->versions()) {
        packages.push_back(v.package());
        versions.push_back(std::to_string(v.version()));
        RETURN_IF_ERROR(
            tx.ExecCached(
                  "INSERT INTO content_status (site_code, location, package, version, state, "
                  "bytes_done, bytes_total, error, updated_at) VALUES ($1, $2, $3, $4, $5, $6, "
                  "$7, $8, now()) ON CONFLICT (site_code, location, package, version) DO UPDATE "
                  "SET state = EXCLUDED.state, bytes_done = EXCLUDED.bytes_done, bytes_total = "
                  "EXCLUDED.bytes_total, error = EXCLUDED.error, updated_at = now() WHERE "
                  "(content_status.state, content_status.bytes_done, content_status.error) IS "
                  "DISTINCT FROM (EXCLUDED.state, EXCLUDED.bytes_done, EXCLUDED.error)",
                  {o_.site_code, req->name(), v.package(), std::to_string(v.version()), v.state(),
                   std::to_string(v.bytes_done()), std::to_string(v.bytes_total()),
                   v.error().substr(0, 1024)})
                .status());
      }
      RETURN_IF_ERROR(tx.Exec("DELETE FROM content_status WHERE site_code = $1 AND location = $2 "
                              "AND (package, version) NOT IN (SELECT * FROM unnest($3::text[], "
                              "$4::bigint[]))",
                              {o_.site_code, req->name(), store::TextArrayLiteral(packages),
                               store::TextArrayLiteral(versions)})
                          .status());
      for (const v1::DpValidationFailure& f : req->failures()) {
        RETURN_IF_ERROR(
            tx.ExecCached(
                  "INSERT INTO content_validation_failures (site_code, location, sha256, found, "
                  "files, detected_at, repaired_at) VALUES ($1, $2, $3, $4, $5, now(), CASE WHEN "
                  "$6 THEN now() END) ON CONFLICT (site_code, location, sha256) DO UPDATE SET "
                  "found = EXCLUDED.found, files = EXCLUDED.files, repaired_at = CASE WHEN $6 "
                  "THEN coalesce(content_validation_failures.repaired_at, now()) END",
                  {o_.site_code, req->name(), f.sha256().substr(0, 64), f.found().substr(0, 64),
                   f.files().substr(0, 4096), f.repaired() ? "t" : "f"})
                .status());
      }
      return absl::OkStatus();
    });
    return ToGrpcStatus(s);
  }

 private:
  absl::Status Check(const grpc::ServerContext& ctx, const std::string& name) {
    ASSIGN_OR_RETURN(PeerIdentity peer, PeerFromContext(ctx));
    if (peer.role != "dp")
      return absl::PermissionDeniedError(absl::StrCat(
          "only distribution points attach here; the certificate is for a ", peer.role));
    if (peer.name != name)
      return absl::PermissionDeniedError(
          absl::StrCat("the certificate names distribution point ", peer.name, ", not ", name));
    if (o_.site_type == v1::SITE_TYPE_CAS)
      return absl::FailedPreconditionError(absl::StrCat(
          "site ", o_.site_code,
          " is a central administration site, which has no distribution points: attach ", name,
          " to a primary or secondary site"));
    if (!o_.has_library)
      return absl::FailedPreconditionError(
          absl::StrCat("site ", o_.site_code,
                       " keeps no content library (set content_library in its configuration)"));
    return absl::OkStatus();
  }

  absl::StatusOr<v1::DpAssignment> Assignment(store::Connection& conn, const std::string& dp) {
    v1::DpAssignment a;
    a.set_site_code(o_.site_code);
    ASSIGN_OR_RETURN(std::vector<VersionKey> keys, NewestVersions(conn, dp));
    for (const VersionKey& k : keys) {
      ASSIGN_OR_RETURN(*a.add_versions(), ReadManifest(conn, k));
    }
    ASSIGN_OR_RETURN(int64_t requested, ValidationRequestedMs(conn, o_.site_code, dp));
    a.set_validate_requested_unix_ms(requested);
    ASSIGN_OR_RETURN(std::optional<LinkLimits> link, ContentLinkOf(conn, dp));
    if (link) {
      a.mutable_link()->set_max_bytes_per_second(link->max_bytes_per_second);
      a.mutable_link()->set_hours(link->hours);
    }
    return a;
  }

  DpLinkOptions o_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeDpLinkService(DpLinkOptions options) {
  return std::make_unique<DpLinkService>(std::move(options));
}

}  // namespace strata::site
