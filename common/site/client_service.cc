#include "common/site/client_service.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/collections/client_settings.h"
#include "common/inventory/report_check.h"
#include "common/net/pki.h"
#include "common/net/tls.h"
#include "common/policy/client_settings.h"
#include "common/site/client_ingest.h"
#include "common/store/database.h"
#include "common/store/pool.h"

namespace strata::site {
namespace {

constexpr int kClientCertificateDays = 365;
constexpr int kMaxLookupIds = 10000;

bool IsHardwareId(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

absl::StatusOr<std::string> Setting(store::Transaction& tx, const std::string& site,
                                    const std::string& name) {
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("SELECT value FROM global_settings WHERE name = $1 OR name = $2 "
                           "ORDER BY (name = $1) DESC LIMIT 1",
                           {absl::StrCat(site, "/", name), name}));
  if (r.empty()) return std::string();
  return r.GetString(0, 0);
}

absl::StatusOr<int64_t> SecondsSetting(store::Transaction& tx, const std::string& site,
                                       const std::string& name, int64_t fallback) {
  ASSIGN_OR_RETURN(std::string v, Setting(tx, site, name));
  int64_t n = 0;
  if (v.empty() || !absl::SimpleAtoi(v, &n) || n <= 0) return fallback;
  return n;
}

// One connected management point.
struct MpSession {
  std::string name;
  grpc::ServerReaderWriter<v1::MpDown, v1::MpUp>* stream;
  grpc::ServerContext* context;
  std::mutex write_mu;
  bool Write(const v1::MpDown& m) {
    std::lock_guard<std::mutex> lock(write_mu);
    return stream->Write(m);
  }
};

}  // namespace

class ClientService::Impl {
 public:
  explicit Impl(ClientServiceOptions options)
      : options_(std::move(options)),
        site_(options_.config.site_code()),
        pool_(options_.config.database()) {}

  absl::Status Start() {
    const auto& ca = options_.config.issuing_ca();
    if (!ca.cert_file().empty() || !ca.key_file().empty()) {
      auto loaded = IssuingCa::Load(ca.cert_file(), ca.key_file());
      if (!loaded.ok()) return loaded.status();
      ca_ = std::move(*loaded);
    }
    if (options_.notifier) {
      subscription_ = options_.notifier->Subscribe([this] {
        std::lock_guard<std::mutex> lock(mu_);
        bundle_dirty_ = true;
        cv_.notify_all();
      });
    }
    threads_.emplace_back([this] { BundleLoop(); });
    if (options_.type == v1::SITE_TYPE_PRIMARY)
      threads_.emplace_back([this] { MaintenanceLoop(); });
    return absl::OkStatus();
  }

  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto* s : sessions_) s->context->TryCancel();
    }
    cv_.notify_all();
    if (options_.notifier && subscription_ >= 0) options_.notifier->Unsubscribe(subscription_);
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
    if (!IsHardwareId(req.hardware_id())) {
      return absl::InvalidArgumentError(
          "hardware_id: 1-128 characters of letters, digits, '-', '_' or '.'");
    }
    if (req.hostname().empty() || req.hostname().size() > 255 ||
        !inventory::IsCleanText(req.hostname())) {
      return absl::InvalidArgumentError("hostname: 1-255 bytes of UTF-8 text");
    }
    if (req.enrollment_token().size() > 256) {
      return absl::InvalidArgumentError("enrollment_token: longer than 256 bytes");
    }
    const std::string owner = options_.owner_site();
    if (owner.empty()) {
      return absl::UnavailableError(
          absl::StrCat("site ", site_, " has not reached its primary yet; retry later"));
    }
    std::string id;
    bool approved = false;
    absl::Status s = pool_.With([&](store::Connection& conn) {
      return conn.Transact([&](store::Transaction& tx) -> absl::Status {
        ASSIGN_OR_RETURN(std::string mode, collections::ApprovalMode(tx));
        bool token_ok = false;
        if (!req.enrollment_token().empty()) {
          ASSIGN_OR_RETURN(store::Result t,
                           tx.Exec("SELECT 1 FROM enrollment_tokens WHERE token_sha256 = $1 AND "
                                   "(expires_at IS NULL OR expires_at > now())",
                                   {Sha256Hex(req.enrollment_token())}));
          if (t.empty()) {
            return absl::PermissionDeniedError(
                "the enrollment token is not recognized or has expired");
          }
          token_ok = true;
        } else if (mode == "token") {
          return absl::UnauthenticatedError(
              "an enrollment token is required to register with this site (approval mode "
              "token, in the Default Client Settings)");
        }
        approved = token_ok || mode == "auto";
        ASSIGN_OR_RETURN(store::Result known,
                         tx.Exec("SELECT id::text, approved, revoked FROM devices WHERE "
                                 "hardware_id = $1 ORDER BY discovered_at LIMIT 1 FOR UPDATE",
                                 {req.hardware_id()}));
        if (!known.empty()) {
          if (known.GetBool(0, 2)) {
            return absl::PermissionDeniedError(
                "this machine's registration was revoked by an administrator");
          }
          id = known.GetString(0, 0);
          approved = approved || known.GetBool(0, 1);
          return tx
              .Exec(
                  "UPDATE devices SET approved = $2, name = $3 WHERE id = $1 AND "
                  "(approved, name) IS DISTINCT FROM ($2, $3)",
                  {id, approved ? "t" : "f", req.hostname()})
              .status();
        }
        ASSIGN_OR_RETURN(
            store::Result inserted,
            tx.Exec("INSERT INTO devices (id, name, site_code, hardware_id, registered_via, "
                    "approved, last_seen_at) VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, now()) "
                    "RETURNING id::text",
                    {req.hostname(), owner, req.hardware_id(), site_, approved ? "t" : "f"}));
        id = inserted.GetString(0, 0);
        return absl::OkStatus();
      });
    });
    if (!s.ok()) return s;
    resp->set_client_id(id);
    resp->set_site_code(owner);
    if (!approved) {
      resp->set_state(v1::REGISTRATION_STATE_PENDING);
      LogInfo("client.pending_approval",
              {{"client", id}, {"host", req.hostname()}, {"mp", mp.name}});
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(IssuedCertificate cert,
                     ca_->Sign(req.csr_pem(), "agent", id, kClientCertificateDays));
    RETURN_IF_ERROR(pool_.With([&](store::Connection& conn) {
      return conn.Exec("UPDATE devices SET cert_serial = $2 WHERE id = $1", {id, cert.serial_hex})
          .status();
    }));
    resp->set_state(v1::REGISTRATION_STATE_APPROVED);
    resp->set_certificate_pem(cert.chain_pem);
    LogDebug("client.registered", {{"client", id}, {"host", req.hostname()}, {"mp", mp.name}});
    return absl::OkStatus();
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
        ASSIGN_OR_RETURN(store::Result r,
                         tx.Exec("SELECT id::text FROM devices WHERE id = ANY($1::uuid[]) AND "
                                 "approved AND NOT revoked",
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
          for (auto& n : names) a->add_settings(std::move(n));
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
    if (up.hello().address().empty() || up.hello().address().size() > 512 ||
        !inventory::IsCleanText(up.hello().address())) {
      return absl::InvalidArgumentError("hello.address: 1-512 bytes of text");
    }
    ASSIGN_OR_RETURN(store::ConnectionPtr conn,
                     store::Connection::Open(options_.config.database()));
    RETURN_IF_ERROR(
        conn->Exec("INSERT INTO site_systems (site_code, role, name, address) VALUES ($1, 'mp', "
                   "$2, $3) ON CONFLICT (site_code, role, name) DO UPDATE SET address = "
                   "EXCLUDED.address, last_seen_at = now()",
                   {site_, mp.name, up.hello().address()})
            .status());
    MpSession session{mp.name, stream, context, {}};
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return absl::UnavailableError("site server stopping");
      sessions_.insert(&session);
      bundle_dirty_ = true;  // the new system changes the bundle; and send it
    }
    cv_.notify_all();
    LogInfo("mp.connected", {{"mp", mp.name}, {"address", up.hello().address()}});
    absl::Status result = ServeMp(*conn, session);
    {
      std::lock_guard<std::mutex> lock(mu_);
      sessions_.erase(&session);
    }
    LogInfo("mp.disconnected", {{"mp", mp.name}, {"reason", result}});
    return result;
  }

 private:
  absl::Status ServeMp(store::Connection& conn, MpSession& session) {
    {
      v1::MpDown down;
      std::lock_guard<std::mutex> lock(mu_);
      if (!bundle_.version().empty()) {
        *down.mutable_bundle() = bundle_;
        // Written under mu_ so that a newer bundle cannot overtake it.
        if (!session.Write(down)) return absl::CancelledError("the management point went away");
      }
    }
    v1::MpUp up;
    while (session.stream->Read(&up)) {
      if (!up.has_batch()) {
        return absl::InvalidArgumentError("after the hello, a management point sends batches");
      }
      std::vector<const v1::ClientReport*> valid;
      for (const auto& r : up.batch().reports()) {
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
                                    {"reports", up.batch().reports_size()},
                                    {"applied", result.applied},
                                    {"duplicates", result.duplicates},
                                    {"software_rows", result.software_rows},
                                    {"write_ms", absl::ToInt64Milliseconds(written - start)},
                                    {"commit_ms", absl::ToInt64Milliseconds(committed - written)}});
      v1::MpDown ack;
      ack.set_acked_spool_seq(up.batch().spool_seq());
      if (!session.Write(ack)) break;
      for (const auto& id : result.full_requests) {
        LogInfo("client.full_inventory_requested", {{"client", id}, {"reason", "delta gap"}});
        v1::MpDown down;
        down.mutable_request()->set_client_id(id);
        down.mutable_request()->set_kind(v1::NOTIFICATION_KIND_FULL_INVENTORY);
        if (!session.Write(down)) break;
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::SiteBundle> BuildBundle() {
    v1::SiteBundle b;
    absl::Status s = pool_.With([&](store::Connection& conn) {
      return conn.Transact([&](store::Transaction& tx) -> absl::Status {
        RETURN_IF_ERROR(collections::LoadClientSettings(tx, &b));
        ASSIGN_OR_RETURN(store::Result bounds,
                         tx.Exec("SELECT name, value, group_name FROM boundaries ORDER BY name"));
        for (size_t i = 0; i < bounds.size(); ++i) {
          auto* x = b.add_boundaries();
          x->set_name(bounds.GetString(i, 0));
          x->set_value(bounds.GetString(i, 1));
          x->set_group(bounds.GetString(i, 2));
        }
        ASSIGN_OR_RETURN(store::Result groups,
                         tx.Exec("SELECT name, assigned_site FROM boundary_groups ORDER BY name"));
        for (size_t i = 0; i < groups.size(); ++i) {
          auto* x = b.add_groups();
          x->set_name(groups.GetString(i, 0));
          x->set_assigned_site(groups.GetString(i, 1));
        }
        ASSIGN_OR_RETURN(
            store::Result systems,
            tx.Exec("SELECT site_code, role, address FROM site_systems ORDER BY site_code, role, "
                    "name"));
        for (size_t i = 0; i < systems.size(); ++i) {
          auto* x = b.add_systems();
          x->set_site_code(systems.GetString(i, 0));
          x->set_role(systems.GetString(i, 1));
          x->set_address(systems.GetString(i, 2));
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

  void BundleLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::seconds(5), [&] { return stopping_ || bundle_dirty_; });
      if (stopping_) break;
      bundle_dirty_ = false;
      lock.unlock();
      auto bundle = BuildBundle();
      lock.lock();
      if (!bundle.ok()) {
        LogWarning("mp.bundle_failed", {{"error", bundle.status()}});
        continue;
      }
      if (bundle->version() != bundle_.version()) {
        bundle_ = *bundle;
        v1::MpDown down;
        *down.mutable_bundle() = bundle_;
        for (auto* s : sessions_) s->Write(down);
        LogInfo("mp.bundle_changed", {{"version", bundle_.version()}, {"mps", sessions_.size()}});
      }
      lock.unlock();
      absl::Status sent = SendAssignmentChanges();
      lock.lock();
      if (!sent.ok()) {
        bundle_dirty_ = true;  // look again
        LogWarning("mp.assignments_failed", {{"error", sent}});
      }
      // At most two rebuilds a second, however busy the database is.
      cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_; });
    }
  }

  // Tells the connected management points about clients whose custom
  // settings changed (queued by a trigger on client_setting_assignments).
  // With none connected the queue is drained all the same: an MP looks up
  // all its clients again whenever its stream to the site starts.
  absl::Status SendAssignmentChanges() {
    // Messages of about 1 MiB at most (the MP's link takes 16 MiB).
    constexpr size_t kMessageBytes = 1 << 20;
    while (true) {
      std::vector<v1::MpDown> messages;
      size_t drained = 0;
      RETURN_IF_ERROR(pool_.With([&](store::Connection& conn) {
        return conn.Transact([&](store::Transaction& tx) -> absl::Status {
          messages.clear();
          ASSIGN_OR_RETURN(store::Result r,
                           tx.Exec("DELETE FROM client_setting_changed WHERE device_id IN (SELECT "
                                   "device_id FROM client_setting_changed LIMIT $1 FOR UPDATE "
                                   "SKIP LOCKED) RETURNING device_id::text",
                                   {absl::StrCat(kMaxLookupIds)}));
          drained = r.size();
          std::vector<std::string> ids;
          for (size_t i = 0; i < r.size(); ++i) ids.push_back(r.GetString(i, 0));
          ASSIGN_OR_RETURN(auto assigned, collections::LoadAssignments(tx, ids));
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
              for (const auto& n : it->second) {
                a->add_settings(n);
                bytes += n.size() + 4;
              }
            }
          }
          return absl::OkStatus();
        });
      }));
      if (drained == 0) return absl::OkStatus();
      std::lock_guard<std::mutex> lock(mu_);
      for (auto* s : sessions_) {
        for (const auto& m : messages) s->Write(m);
      }
      LogInfo("client_settings.changed", {{"clients", drained}, {"mps", sessions_.size()}});
      if (drained < static_cast<size_t>(kMaxLookupIds)) return absl::OkStatus();
    }
  }

  void MaintenanceLoop() {
    int64_t period = options_.config.client_maintenance_seconds() > 0
                         ? options_.config.client_maintenance_seconds()
                         : 300;
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(period), [&] { return stopping_; })) {
      lock.unlock();
      absl::Status s = RunMaintenance();
      if (!s.ok()) LogWarning("client.maintenance_failed", {{"error", s}});
      lock.lock();
    }
  }

  absl::Status RunMaintenance() {
    return pool_.With([&](store::Connection& conn) {
      return conn.Transact([&](store::Transaction& tx) -> absl::Status {
        ASSIGN_OR_RETURN(int64_t inactive,
                         SecondsSetting(tx, site_, "client.inactive_after_seconds",
                                        kDefaultInactiveAfterSeconds));
        ASSIGN_OR_RETURN(int64_t remove, SecondsSetting(tx, site_, "client.delete_after_seconds",
                                                        kDefaultDeleteAfterSeconds));
        ASSIGN_OR_RETURN(
            store::Result marked,
            tx.Exec("UPDATE devices SET active = false WHERE site_code = $1 AND active AND "
                    "coalesce(last_seen_at, discovered_at) < now() - make_interval(secs => $2)",
                    {site_, absl::StrCat(inactive)}));
        ASSIGN_OR_RETURN(
            store::Result gone,
            tx.Exec("DELETE FROM devices WHERE site_code = $1 AND coalesce(last_seen_at, "
                    "discovered_at) < now() - make_interval(secs => $2) RETURNING id::text",
                    {site_, absl::StrCat(remove)}));
        if (!gone.empty()) {
          std::vector<std::string> ids;
          for (size_t i = 0; i < gone.size(); ++i) ids.push_back(gone.GetString(i, 0));
          std::string arr = store::TextArrayLiteral(ids);
          for (const char* table :
               {"device_os", "device_system", "device_memory", "device_processor", "device_disk",
                "device_network", "device_software", "status_messages"}) {
            RETURN_IF_ERROR(
                tx.Exec(absl::StrCat("DELETE FROM ", table, " WHERE device_id = ANY($1::uuid[])"),
                        {arr})
                    .status());
          }
        }
        if (marked.affected_rows() > 0 || !gone.empty()) {
          LogInfo("client.maintenance",
                  {{"marked_inactive", marked.affected_rows()}, {"deleted", gone.size()}});
        }
        return absl::OkStatus();
      });
    });
  }

  const ClientServiceOptions options_;
  const std::string site_;
  store::ConnectionPool pool_;
  std::unique_ptr<IssuingCa> ca_;
  int subscription_ = -1;
  std::vector<std::thread> threads_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;          // guarded by mu_
  bool bundle_dirty_ = true;       // guarded by mu_
  v1::SiteBundle bundle_;          // guarded by mu_
  std::set<MpSession*> sessions_;  // guarded by mu_
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

grpc::Status ClientService::Connect(grpc::ServerContext* context,
                                    grpc::ServerReaderWriter<v1::MpDown, v1::MpUp>* stream) {
  return ToGrpcStatus(impl_->Connect(context, stream));
}

}  // namespace strata::site
