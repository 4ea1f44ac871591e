#include "common/site/client_service.h"

#include "common/site/content_catalog.h"

#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/collections/app_deployments.h"
#include "common/collections/client_settings.h"
#include "common/collections/script_runs.h"
#include "common/inventory/report_check.h"
#include "common/net/asset_key.h"
#include "common/net/pki.h"
#include "common/net/tls.h"
#include "common/policy/client_settings.h"
#include "common/site/client_ingest.h"
#include "common/site/client_registration.h"
#include "common/site/runbook_dispatch.h"
#include "common/store/database.h"
#include "common/store/pool.h"

namespace strata::site {
namespace {

constexpr int kClientCertificateDays = 365;
constexpr int kMaxLookupIds = 10000;
// Connections kept open for the MPs' calls (more are opened under load, then
// closed): a runbook worker group's exchanges arrive many at once, and a
// connection opened per call costs the database a process start.
constexpr size_t kPoolConnections = 32;
// Messages pushed to MPs of about this size at most (their link takes 16 MiB).
constexpr size_t kMessageBytes = 1 << 20;
// Clients an MP reports holding are recorded at most this often.
constexpr absl::Duration kStatusRecordEvery = absl::Seconds(30);

// One connected management point.
struct MpSession {
  std::string name;
  grpc::ServerReaderWriter<v1::MpDown, v1::MpUp>* stream;
  grpc::ServerContext* context;
  std::string last_seen;  // site_systems.last_seen_at as this stream last wrote it
  absl::Mutex write_mu;   // gRPC allows one write at a time
  bool Write(const v1::MpDown& m) {
    absl::MutexLock lock(&write_mu);
    return stream->Write(m);
  }
};

}  // namespace

class ClientService::Impl {
 public:
  explicit Impl(ClientServiceOptions options)
      : options_(std::move(options)),
        site_(options_.config.site_code()),
        pool_(options_.config.database(), kPoolConnections) {}

  absl::Status Start() {
    const auto& ca = options_.config.issuing_ca();
    if (!ca.cert_file().empty() || !ca.key_file().empty()) {
      auto loaded = IssuingCa::Load(ca.cert_file(), ca.key_file());
      if (!loaded.ok()) return loaded.status();
      ca_ = std::move(*loaded);
    }
    if (options_.notifier) {
      // Only the wake lock: the notifier's callers (every link) must never
      // wait for a write to a slow MP.
      subscription_ = options_.notifier->Subscribe([this] {
        absl::MutexLock lock(&wake_mu_);
        bundle_dirty_ = true;
        changes_dirty_ = true;
      });
    }
    threads_.emplace_back([this] { BundleLoop(); });
    threads_.emplace_back([this] { ChangesLoop(); });
    if (!options_.config.asset_key_file().empty()) {
      auto key = AssetKey::Load(options_.config.asset_key_file());
      if (!key.ok()) return key.status();  // a configured key must be readable
      asset_key_ = *key;
    }
    runbooks_ =
        std::make_unique<RunbookDispatcher>(options_.config.database(), site_, options_.notifier);
    runbooks_->Start();
    return absl::OkStatus();
  }

  void Shutdown() {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto* s : sessions_) s->context->TryCancel();
    }
    {
      absl::MutexLock lock(&wake_mu_);
      wake_stop_ = true;
    }
    if (options_.notifier && subscription_ >= 0) options_.notifier->Unsubscribe(subscription_);
    if (runbooks_) runbooks_->Stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  // The caller must be a management point of this site.
  absl::StatusOr<PeerIdentity> CheckMp(const grpc::ServerContext& context) {
    ASSIGN_OR_RETURN(PeerIdentity peer, PeerFromContext(context));
    if (peer.role != "mp" || !absl::StartsWith(peer.name, site_ + ".")) {
      return absl::PermissionDeniedError(
          absl::StrCat("only management points of site ", site_, " (certificate OU=mp, CN=", site_,
                       ".<name>) may call this; the caller is ", peer.ToString()));
    }
    return peer;
  }

  absl::Status Register(const grpc::ServerContext& context, const v1::RegisterRequest& req,
                        v1::RegisterResponse* resp) {
    ASSIGN_OR_RETURN(PeerIdentity mp, CheckMp(context));
    if (!ca_) {
      return absl::FailedPreconditionError(
          absl::StrCat("site ", site_, " has no issuing CA configured (issuing_ca in its config)"));
    }
    RETURN_IF_ERROR(CheckRegisterRequest(req));
    const std::string owner = options_.owner_site();
    if (owner.empty()) {
      return absl::UnavailableError(
          absl::StrCat("site ", site_, " has not reached its primary yet; retry later"));
    }
    Registered r;
    RETURN_IF_ERROR(pool_.With([&](store::Connection& conn) {
      return conn.Transact([&](store::Transaction& tx) -> absl::Status {
        ASSIGN_OR_RETURN(r, RegisterDevice(tx, site_, owner, req));
        return absl::OkStatus();
      });
    }));
    resp->set_client_id(r.id);
    resp->set_site_code(owner);
    if (!r.approved) {
      resp->set_state(v1::REGISTRATION_STATE_PENDING);
      LogInfo("client.pending_approval",
              {{"client", r.id}, {"host", req.hostname()}, {"mp", mp.name}});
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(IssuedCertificate cert,
                     ca_->Sign(req.csr_pem(), "agent", r.id, kClientCertificateDays));
    RETURN_IF_ERROR(pool_.With([&](store::Connection& conn) {
      return conn.Exec("UPDATE devices SET cert_serial = $2 WHERE id = $1", {r.id, cert.serial_hex})
          .status();
    }));
    resp->set_state(v1::REGISTRATION_STATE_APPROVED);
    resp->set_certificate_pem(cert.chain_pem);
    LogDebug("client.registered", {{"client", r.id}, {"host", req.hostname()}, {"mp", mp.name}});
    return absl::OkStatus();
  }

  // A content version for an agent: its manifest and the DPs that report
  // holding it.
  absl::Status ContentManifest(const grpc::ServerContext& context,
                               const v1::ContentManifestRequest& req,
                               v1::ContentManifestResponse* resp) {
    RETURN_IF_ERROR(CheckMp(context).status());
    if (req.package().empty() || req.package().size() > 256 || req.version() < 0)
      return absl::InvalidArgumentError("package: 1-256 bytes; version: 0 (newest) or more");
    return pool_.With([&](store::Connection& conn) -> absl::Status {
      VersionKey key{req.package(), req.version()};
      if (key.version == 0) {
        ASSIGN_OR_RETURN(std::vector<VersionKey> newest, NewestVersions(conn, ""));
        for (const VersionKey& k : newest)
          if (k.package == key.package) key = k;
      } else {
        ASSIGN_OR_RETURN(store::Result r,
                         conn.Exec("SELECT files = (SELECT count(*) FROM package_files f WHERE "
                                   "f.package = v.package AND f.version = v.version) FROM "
                                   "package_versions v WHERE package = $1 AND version = $2",
                                   {key.package, std::to_string(key.version)}));
        if (r.empty() || !r.GetBool(0, 0)) key.version = 0;
      }
      if (key.version == 0)
        return absl::NotFoundError(
            absl::StrCat("site ", site_, " knows no package \"", req.package(), "\"",
                         req.version() > 0 ? absl::StrCat(" version ", req.version()) : ""));
      ASSIGN_OR_RETURN(*resp->mutable_manifest(), ReadManifest(conn, key));
      ASSIGN_OR_RETURN(store::Result at,
                       conn.Exec("SELECT location FROM content_status WHERE package = $1 AND "
                                 "version = $2 AND state = 'installed' AND location <> 'site' "
                                 "ORDER BY location",
                                 {key.package, std::to_string(key.version)}));
      for (size_t i = 0; i < at.size(); ++i) resp->add_installed_at(at.GetString(i, 0));
      return absl::OkStatus();
    });
  }

  // A runbook worker's exchange, from the MP it reaches (runbook_dispatch.h).
  absl::Status RunbookWork(const grpc::ServerContext& context, const v1::RunbookWorkRequest& req,
                           v1::RunbookWorkResponse* resp) {
    RETURN_IF_ERROR(CheckMp(context).status());
    if (!inventory::IsUuid(req.client_id()))
      return absl::InvalidArgumentError("client_id: not a UUID");
    return pool_.With([&](store::Connection& conn) {
      return site::RunbookWork(conn, site_, req.client_id(), req, resp,
                               asset_key_ ? &*asset_key_ : nullptr);
    });
  }

  absl::Status Lookup(const grpc::ServerContext& context, const v1::ClientLookupRequest& req,
                      v1::ClientLookupResponse* resp) {
    RETURN_IF_ERROR(CheckMp(context).status());
    if (req.client_ids_size() > kMaxLookupIds) {
      return absl::InvalidArgumentError(
          absl::StrCat("at most ", kMaxLookupIds, " client ids per lookup"));
    }
    std::vector<std::string> ids;
    for (const auto& id : req.client_ids()) {
      if (inventory::IsUuid(id)) ids.push_back(id);
    }
    if (ids.empty()) return absl::OkStatus();
    return pool_.With([&](store::Connection& conn) {
      return conn.Transact([&](store::Transaction& tx) -> absl::Status {
        resp->Clear();  // a retried transaction starts over
        // Approved (by its registration or an administrator), not blocked.
        ASSIGN_OR_RETURN(store::Result r,
                         tx.Exec("SELECT id::text FROM devices WHERE id = ANY($1::uuid[]) AND "
                                 "strata_client_state(id, approved, revoked) = 'approved'",
                                 {store::TextArrayLiteral(ids)}));
        std::vector<std::string> allowed;
        for (size_t i = 0; i < r.size(); ++i) {
          allowed.push_back(r.GetString(i, 0));
          resp->add_allowed(allowed.back());
        }
        ASSIGN_OR_RETURN(auto assigned, collections::LoadAssignments(tx, allowed));
        for (auto& [id, names] : assigned) {
          auto* a = resp->add_assignments();
          a->set_client_id(id);
          policy::ToProto(std::move(names), a);
        }
        return absl::OkStatus();
      });
    });
  }

  absl::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::MpDown, v1::MpUp>* stream) {
    ASSIGN_OR_RETURN(PeerIdentity mp, CheckMp(*context));
    v1::MpUp up;
    if (!stream->Read(&up)) return absl::CancelledError("the management point went away");
    if (!up.has_hello() || up.hello().name() != mp.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("the first message must be a hello naming ", mp.name));
    }
    const v1::MpHello& hello = up.hello();
    if (hello.address().empty() || hello.address().size() > 512 ||
        !inventory::IsCleanText(hello.address())) {
      return absl::InvalidArgumentError("hello.address: 1-512 bytes of text");
    }
    if (hello.version().size() > 64 || !inventory::IsCleanText(hello.version())) {
      return absl::InvalidArgumentError("hello.version: at most 64 bytes of text");
    }
    ASSIGN_OR_RETURN(store::ConnectionPtr conn,
                     store::Connection::Open(options_.config.database()));
    ASSIGN_OR_RETURN(
        store::Result seen,
        conn->Exec("INSERT INTO site_systems (site_code, role, name, address, version, state) "
                   "VALUES ($1, 'mp', $2, $3, $4, 'online') ON CONFLICT (site_code, role, name) "
                   "DO UPDATE SET address = EXCLUDED.address, version = EXCLUDED.version, state = "
                   "'online', last_seen_at = now() RETURNING last_seen_at::text",
                   {site_, mp.name, hello.address(), hello.version()}));
    MpSession session{mp.name, stream, context, seen.GetString(0, 0), {}};
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return absl::UnavailableError("site server stopping");
      sessions_.insert(&session);
    }
    {
      absl::MutexLock lock(&wake_mu_);
      bundle_dirty_ = true;  // the new system changes the bundle; and send it
    }
    LogInfo("mp.connected",
            {{"mp", mp.name}, {"address", hello.address()}, {"version", hello.version()}});
    absl::Status result = ServeMp(*conn, session);
    {
      absl::MutexLock lock(&mu_);
      sessions_.erase(&session);
    }
    // Offline as its site server saw it go (best effort: a site server that
    // dies leaves it "online" with an old last contact, shown as unknown),
    // unless a newer stream of the same MP wrote since.
    absl::Status offline =
        conn->Exec(
                "UPDATE site_systems SET state = 'offline', last_seen_at = now() WHERE "
                "site_code = $1 AND role = 'mp' AND name = $2 AND last_seen_at <= $3",
                {site_, mp.name, session.last_seen})
            .status();
    // Its clients are offline with it (a newer stream says otherwise).
    if (offline.ok())
      offline = conn->Exec(
                        "UPDATE client_presence SET online = false, changed_at = now() WHERE "
                        "mp = $2 AND online AND NOT EXISTS (SELECT 1 FROM site_systems WHERE "
                        "site_code = $1 AND role = 'mp' AND name = $2 AND state = 'online')",
                        {site_, mp.name})
                    .status();
    if (!offline.ok()) LogWarning("mp.state_not_recorded", {{"mp", mp.name}, {"error", offline}});
    LogInfo("mp.disconnected", {{"mp", mp.name}, {"reason", result}});
    return result;
  }

 private:
  absl::Status ServeMp(store::Connection& conn, MpSession& session) {
    {
      v1::MpDown down;
      absl::MutexLock lock(&mu_);
      if (!bundle_.version().empty()) {
        *down.mutable_bundle() = bundle_;
        // Written under mu_ so that a newer bundle cannot overtake it.
        if (!session.Write(down)) return absl::CancelledError("the management point went away");
      }
    }
    v1::MpUp up;
    absl::Time status_recorded = absl::InfinitePast();
    int64_t clients_recorded = -1;
    while (session.stream->Read(&up)) {
      if (up.has_status()) {
        // Recorded when it changed, else at most every kStatusRecordEvery
        // (each write replicates up to the CAS).
        const int64_t clients = std::max<int64_t>(up.status().clients_connected(), 0);
        if (absl::Status p = RecordPresence(conn, session.name, up.status()); !p.ok())
          LogWarning("mp.presence_not_recorded", {{"mp", session.name}, {"error", p}});
        if (clients != clients_recorded || absl::Now() - status_recorded > kStatusRecordEvery) {
          // A failure to record it is logged, not worth the MP's stream.
          auto seen = conn.Exec(
              "UPDATE site_systems SET clients_connected = $3, state = 'online', last_seen_at = "
              "now() WHERE site_code = $1 AND role = 'mp' AND name = $2 RETURNING "
              "last_seen_at::text",
              {site_, session.name, absl::StrCat(clients)});
          if (!seen.ok()) {
            LogWarning("mp.state_not_recorded", {{"mp", session.name}, {"error", seen.status()}});
          } else if (!seen->empty()) {
            session.last_seen = seen->GetString(0, 0);
          }
          clients_recorded = clients;
          status_recorded = absl::Now();
        }
        continue;
      }
      if (!up.has_batch()) {
        return absl::InvalidArgumentError(
            "after the hello, a management point sends batches and status");
      }
      RETURN_IF_ERROR(Ingest(conn, session, up.batch()));
    }
    return absl::OkStatus();
  }

  // Applies one batch of client reports and acknowledges it.
  absl::Status Ingest(store::Connection& conn, MpSession& session, const v1::ReportBatch& batch) {
    std::vector<const v1::ClientReport*> valid;
    for (const auto& r : batch.reports()) {
      absl::Status s = inventory::CheckReport(r);
      if (s.ok() && !inventory::IsUuid(r.client_id())) {
        s = absl::InvalidArgumentError("client_id: not a UUID");
      }
      if (!s.ok()) {
        // The MP checks reports before it acknowledges them; one that still
        // fails here is dropped (and logged), never retried forever.
        LogWarning("mp.report_rejected",
                   {{"mp", session.name}, {"client", r.client_id()}, {"error", s}});
        continue;
      }
      valid.push_back(&r);
    }
    IngestResult result;
    const absl::Time start = absl::Now();
    absl::Time written;
    absl::Status s = conn.Transact([&](store::Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(result, IngestReports(tx, valid));
      written = absl::Now();
      return absl::OkStatus();
    });
    const absl::Time committed = absl::Now();
    if (!s.ok()) {
      v1::MpDown down;
      down.set_error(s.ToString());
      session.Write(down);
      return absl::UnavailableError(absl::StrCat("ingest failed: ", s.message()));
    }
    LogDebug("mp.batch_applied", {{"mp", session.name},
                                  {"reports", batch.reports_size()},
                                  {"applied", result.applied},
                                  {"duplicates", result.duplicates},
                                  {"software_rows", result.software_rows},
                                  {"write_ms", absl::ToInt64Milliseconds(written - start)},
                                  {"commit_ms", absl::ToInt64Milliseconds(committed - written)}});
    v1::MpDown ack;
    ack.set_acked_spool_seq(batch.spool_seq());
    if (!session.Write(ack)) return absl::OkStatus();  // the MP went away
    for (const auto& id : result.full_requests) {
      LogInfo("client.full_inventory_requested", {{"client", id}, {"reason", "delta gap"}});
      v1::MpDown down;
      down.mutable_request()->set_client_id(id);
      down.mutable_request()->set_kind(v1::NOTIFICATION_KIND_FULL_INVENTORY);
      if (!session.Write(down)) break;
    }
    return absl::OkStatus();
  }

  // Which of an MP's clients hold a channel (client_presence, site data:
  // the CAS counts a live query's offline devices with it). Only devices
  // known here; a full status marks the MP's others offline.
  absl::Status RecordPresence(store::Connection& conn, const std::string& mp,
                              const v1::MpStatus& st) {
    if (!st.full() && st.online_size() == 0 && st.offline_size() == 0) return absl::OkStatus();
    const std::string online = store::TextArrayLiteral({st.online().begin(), st.online().end()});
    const std::string offline = store::TextArrayLiteral({st.offline().begin(), st.offline().end()});
    return conn.Transact([&](store::Transaction& tx) -> absl::Status {
      if (st.full()) {
        RETURN_IF_ERROR(tx.Exec("UPDATE client_presence SET online = false, changed_at = now() "
                                "WHERE mp = $1 AND online AND NOT (device_id = ANY($2::uuid[]))",
                                {mp, online})
                            .status());
      }
      RETURN_IF_ERROR(tx.Exec("UPDATE client_presence SET online = false, changed_at = now() "
                              "WHERE mp = $1 AND online AND device_id = ANY($2::uuid[])",
                              {mp, offline})
                          .status());
      return tx
          .Exec(
              "INSERT INTO client_presence (device_id, site_code, mp, online) SELECT d.id, $1, "
              "$2, true FROM devices d WHERE d.id = ANY($3::uuid[]) ORDER BY d.id ON CONFLICT "
              "(device_id) DO UPDATE SET online = true, mp = EXCLUDED.mp, site_code = "
              "EXCLUDED.site_code, changed_at = now() WHERE NOT client_presence.online OR "
              "client_presence.mp <> EXCLUDED.mp",
              {site_, mp, online})
          .status();
    });
  }

  absl::StatusOr<v1::SiteBundle> BuildBundle() {
    v1::SiteBundle b;
    absl::Status s = pool_.With([&](store::Connection& conn) {
      return conn.Transact([&](store::Transaction& tx) -> absl::Status {
        b.Clear();
        RETURN_IF_ERROR(collections::LoadClientSettings(tx, &b));
        RETURN_IF_ERROR(collections::LoadDeploymentPolicies(tx, &b));
        RETURN_IF_ERROR(collections::LoadScriptRuns(tx, &b));
        RETURN_IF_ERROR(collections::LoadLiveQueries(tx, &b));
        ASSIGN_OR_RETURN(store::Result bounds,
                         tx.Exec("SELECT name, value, group_name FROM boundaries ORDER BY name"));
        for (size_t i = 0; i < bounds.size(); ++i) {
          auto* x = b.add_boundaries();
          x->set_name(bounds.GetString(i, 0));
          x->set_value(bounds.GetString(i, 1));
          x->set_group(bounds.GetString(i, 2));
        }
        ASSIGN_OR_RETURN(store::Result groups,
                         tx.Exec("SELECT name, assigned_site, (SELECT array_agg(dp ORDER BY "
                                 "position, dp)::text FROM boundary_group_dps d WHERE "
                                 "d.group_name = g.name) FROM boundary_groups g ORDER BY name"));
        for (size_t i = 0; i < groups.size(); ++i) {
          auto* x = b.add_groups();
          x->set_name(groups.GetString(i, 0));
          x->set_assigned_site(groups.GetString(i, 1));
          for (const std::string& dp : store::ParseTextArray(groups.GetString(i, 2)))
            x->add_distribution_points(dp);
        }
        ASSIGN_OR_RETURN(store::Result systems,
                         tx.Exec("SELECT site_code, role, address, name, state = 'online' FROM "
                                 "site_systems ORDER BY site_code, role, name"));
        for (size_t i = 0; i < systems.size(); ++i) {
          auto* x = b.add_systems();
          x->set_site_code(systems.GetString(i, 0));
          x->set_role(systems.GetString(i, 1));
          x->set_address(systems.GetString(i, 2));
          x->set_name(systems.GetString(i, 3));
          x->set_online(systems.GetBool(i, 4));
        }
        return absl::OkStatus();
      });
    });
    if (!s.ok()) return s;
    b.set_site_code(site_);
    std::string bytes;
    b.SerializeToString(&bytes);
    b.set_version(policy::ContentVersion(bytes));
    return b;
  }

  // Rebuilds the bundle when the site's data changed (at most twice a
  // second).
  void BundleLoop() {
    while (true) {
      {
        absl::MutexLock lock(&wake_mu_);
        auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) {
          return wake_stop_ || bundle_dirty_;
        };
        wake_mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(5));
        if (wake_stop_) return;
        bundle_dirty_ = false;
      }
      auto bundle = BuildBundle();
      if (!bundle.ok()) {
        LogWarning("mp.bundle_failed", {{"error", bundle.status()}});
      } else {
        absl::MutexLock lock(&mu_);
        if (bundle->version() != bundle_.version()) {
          bundle_ = *bundle;
          v1::MpDown down;
          *down.mutable_bundle() = bundle_;
          for (auto* s : sessions_) s->Write(down);
          LogInfo("mp.bundle_changed", {{"version", bundle_.version()}, {"mps", sessions_.size()}});
        }
      }
      absl::MutexLock lock(&wake_mu_);
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) { return wake_stop_; };
      wake_mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Milliseconds(500));
    }
  }

  // Passes changes of clients' assignments and approval on to the MPs as
  // soon as they are written (a run or a query reaches its clients without
  // waiting for the bundle's half-second): a cheap look when the queues are
  // empty. An assignment naming what the MP's bundle does not hold yet is
  // served without it until the bundle comes (the MP then tells the clients
  // whose policy changed).
  void ChangesLoop() {
    while (true) {
      {
        absl::MutexLock lock(&wake_mu_);
        auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) {
          return wake_stop_ || changes_dirty_;
        };
        wake_mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(5));
        if (wake_stop_) return;
        changes_dirty_ = false;
      }
      absl::Status sent =
          DrainToMps("client_setting_changed", "client_settings.changed", AssignmentMessages);
      if (sent.ok())
        sent = DrainToMps("client_access_changed", "client_access.changed", AccessMessages);
      if (sent.ok())
        sent = DrainToMps("runbook_wake", "runbooks.work_waiting", RunbookWakeMessages);
      absl::MutexLock lock(&wake_mu_);
      if (!sent.ok()) {
        changes_dirty_ = true;  // look again, in a second
        LogWarning("mp.client_changes_failed", {{"error", sent}});
      }
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) { return wake_stop_; };
      wake_mu_.AwaitWithTimeout(absl::Condition(&stopped),
                                sent.ok() ? absl::Milliseconds(20) : absl::Seconds(1));
    }
  }

  using MessageBuilder = absl::StatusOr<std::vector<v1::MpDown>> (*)(
      store::Transaction&, const std::vector<std::string>& ids);

  // Clients whose custom settings changed: their settings now.
  static absl::StatusOr<std::vector<v1::MpDown>> AssignmentMessages(
      store::Transaction& tx, const std::vector<std::string>& ids) {
    ASSIGN_OR_RETURN(auto assigned, collections::LoadAssignments(tx, ids));
    std::vector<v1::MpDown> messages;
    size_t bytes = kMessageBytes;
    for (const auto& id : ids) {
      if (bytes >= kMessageBytes) {
        messages.emplace_back();
        bytes = 0;
      }
      auto* a = messages.back().mutable_assignments()->add_clients();
      a->set_client_id(id);
      bytes += id.size() + 8;
      auto it = assigned.find(id);
      if (it != assigned.end()) {
        for (const auto* list :
             {&it->second.settings, &it->second.deployments, &it->second.windows,
              &it->second.script_runs, &it->second.live_queries, &it->second.runbook_worker_groups})
          for (const auto& n : *list) bytes += n.size() + 4;
        policy::ToProto(std::move(it->second), a);
      }
    }
    return messages;
  }

  // Clients an administrator approved, blocked or unblocked: MPs look them
  // up again (at most 10,000 ids, ~400 KB, in one message).
  static absl::StatusOr<std::vector<v1::MpDown>> AccessMessages(
      store::Transaction&, const std::vector<std::string>& ids) {
    std::vector<v1::MpDown> messages(1);
    for (const auto& id : ids) messages[0].mutable_access_changed()->add_client_ids(id);
    return messages;
  }

  // Drains `queue` (a local table of device ids a trigger fills) in rounds
  // of up to kMaxLookupIds, sending `build`'s messages for each round to
  // every connected MP. With none connected the queue is drained all the
  // same: an MP looks up all its clients again whenever its stream to the
  // site starts.
  absl::Status DrainToMps(const char* queue, const char* event, MessageBuilder build) {
    while (true) {
      std::vector<v1::MpDown> messages;
      size_t drained = 0;
      RETURN_IF_ERROR(pool_.With([&](store::Connection& conn) {
        return conn.Transact([&](store::Transaction& tx) -> absl::Status {
          ASSIGN_OR_RETURN(
              store::Result r,
              tx.Exec(absl::StrCat("DELETE FROM ", queue,
                                   " WHERE device_id IN (SELECT device_id FROM ", queue,
                                   " LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING "
                                   "device_id::text"),
                      {absl::StrCat(kMaxLookupIds)}));
          drained = r.size();
          std::vector<std::string> ids;
          for (size_t i = 0; i < r.size(); ++i) ids.push_back(r.GetString(i, 0));
          if (ids.empty()) return absl::OkStatus();
          ASSIGN_OR_RETURN(messages, build(tx, ids));
          return absl::OkStatus();
        });
      }));
      if (drained == 0) return absl::OkStatus();
      absl::MutexLock lock(&mu_);
      for (auto* s : sessions_) {
        for (const auto& m : messages) s->Write(m);
      }
      LogInfo(event, {{"clients", drained}, {"mps", sessions_.size()}});
      if (drained < static_cast<size_t>(kMaxLookupIds)) return absl::OkStatus();
    }
  }

  const ClientServiceOptions options_;
  const std::string site_;
  store::ConnectionPool pool_;
  std::unique_ptr<IssuingCa> ca_;
  std::unique_ptr<RunbookDispatcher> runbooks_;
  std::optional<AssetKey> asset_key_;  // runbook assets handed to workers
  int subscription_ = -1;
  std::vector<std::thread> threads_;

  // The sessions and what they were sent; held while writing to them.
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  v1::SiteBundle bundle_ ABSL_GUARDED_BY(mu_);
  std::set<MpSession*> sessions_ ABSL_GUARDED_BY(mu_);
  // What wakes the bundle loop; never held while writing to an MP.
  absl::Mutex wake_mu_;
  bool bundle_dirty_ ABSL_GUARDED_BY(wake_mu_) = true;
  bool changes_dirty_ ABSL_GUARDED_BY(wake_mu_) = true;
  bool wake_stop_ ABSL_GUARDED_BY(wake_mu_) = false;
};

ClientService::ClientService(ClientServiceOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
ClientService::~ClientService() { Shutdown(); }
absl::Status ClientService::Start() { return impl_->Start(); }
void ClientService::Shutdown() { impl_->Shutdown(); }

grpc::Status ClientService::Register(grpc::ServerContext* context,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) {
  absl::Status s = impl_->Register(*context, *request, response);
  if (!s.ok() && s.code() != absl::StatusCode::kUnavailable) {
    LogWarning("client.register_refused", {{"host", request->hostname()}, {"error", s}});
  }
  return ToGrpcStatus(s);
}

grpc::Status ClientService::LookupClients(grpc::ServerContext* context,
                                          const v1::ClientLookupRequest* request,
                                          v1::ClientLookupResponse* response) {
  return ToGrpcStatus(impl_->Lookup(*context, *request, response));
}

grpc::Status ClientService::GetContentManifest(grpc::ServerContext* context,
                                               const v1::ContentManifestRequest* request,
                                               v1::ContentManifestResponse* response) {
  return ToGrpcStatus(impl_->ContentManifest(*context, *request, response));
}

grpc::Status ClientService::RunbookWork(grpc::ServerContext* context,
                                        const v1::RunbookWorkRequest* request,
                                        v1::RunbookWorkResponse* response) {
  return ToGrpcStatus(impl_->RunbookWork(*context, *request, response));
}

grpc::Status ClientService::Connect(grpc::ServerContext* context,
                                    grpc::ServerReaderWriter<v1::MpDown, v1::MpUp>* stream) {
  return ToGrpcStatus(impl_->Connect(context, stream));
}

}  // namespace strata::site
