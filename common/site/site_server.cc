#include "common/site/site_server.h"

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>  // std::call_once
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/backoff.h"
#include "common/base/config.h"
#include "common/base/hlc.h"
#include "common/base/log.h"
#include "common/base/shutdown_guard.h"
#include "common/base/status.h"
#include "common/collections/client_settings.h"
#include "common/collections/evaluator.h"
#include "common/content/transfer.h"
#include "common/net/tls.h"
#include "common/replication/change_log.h"
#include "common/replication/link_session.h"
#include "common/replication/migrations.h"
#include "common/replication/wal_reader.h"
#include "common/site/client_service.h"
#include "common/site/content.h"
#include "common/site/site_metrics.h"
#include "common/site/site_status.h"
#include "common/site/topology.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "strata/v1/site_link.grpc.pb.h"

namespace strata::site {

extern const EmbeddedFile kSiteMigrations[];
extern const int kSiteMigrationsCount;

namespace {

using replication::LinkCounters;
using replication::LinkSession;
using replication::LinkStream;
using replication::Position;

// Server end of a link stream.
class ServerLinkStream final : public LinkStream {
 public:
  ServerLinkStream(grpc::ServerContext* ctx,
                   grpc::ServerReaderWriter<v1::LinkMessage, v1::LinkMessage>* rw)
      : ctx_(ctx), rw_(rw) {}
  bool Read(v1::LinkMessage* m) override { return rw_->Read(m); }
  bool Write(const v1::LinkMessage& m) override {
    absl::MutexLock lock(&write_mu_);
    return rw_->Write(m);
  }
  void Cancel() override { ctx_->TryCancel(); }

 private:
  grpc::ServerContext* ctx_;
  grpc::ServerReaderWriter<v1::LinkMessage, v1::LinkMessage>* rw_;
  absl::Mutex write_mu_;  // gRPC allows one write at a time
};

// Client end of a link stream.
class ClientLinkStream final : public LinkStream {
 public:
  explicit ClientLinkStream(v1::SiteLink::Stub* stub) : rw_(stub->Replicate(&ctx_)) {}
  bool Read(v1::LinkMessage* m) override { return rw_->Read(m); }
  bool Write(const v1::LinkMessage& m) override {
    absl::MutexLock lock(&write_mu_);
    return rw_->Write(m);
  }
  void Cancel() override { ctx_.TryCancel(); }
  grpc::Status Finish() { return rw_->Finish(); }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::LinkMessage, v1::LinkMessage>> rw_;
  absl::Mutex write_mu_;  // gRPC allows one write at a time
};

bool IsRefusal(absl::StatusCode code) {
  return code == absl::StatusCode::kPermissionDenied ||
         code == absl::StatusCode::kFailedPrecondition ||
         code == absl::StatusCode::kAlreadyExists || code == absl::StatusCode::kUnauthenticated ||
         code == absl::StatusCode::kInvalidArgument;
}

}  // namespace

absl::Status ValidateSiteConfig(v1::SiteType type, const v1::SiteServerConfig& config) {
  if (absl::Status s = ValidateSiteCode(config.site_code()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("site_code: ", s.message()));
  }
  if (config.database().empty()) {
    return absl::InvalidArgumentError("database: a PostgreSQL connection string is required");
  }
  if (config.listen_address().empty()) {
    return absl::InvalidArgumentError(
        "listen_address: required (host:port, port 0 for any free port, or unix:/path)");
  }
  if (config.tls().ca_file().empty() || config.tls().cert_file().empty() ||
      config.tls().key_file().empty()) {
    return absl::InvalidArgumentError(
        "tls: ca_file, cert_file and key_file are all required (every link is mutual TLS)");
  }
  if (type == v1::SITE_TYPE_CAS && !config.parent_address().empty()) {
    return absl::InvalidArgumentError(
        "parent_address: a central administration site has no parent");
  }
  if (type == v1::SITE_TYPE_SECONDARY && config.parent_address().empty()) {
    return absl::InvalidArgumentError(
        "parent_address: a secondary site needs the address of its primary site");
  }
  if (auto hours = content::TransferHours::Parse(config.content_from_parent().hours());
      !hours.ok()) {
    return Annotate(hours.status(), "content_from_parent");
  }
  RETURN_IF_ERROR(metrics::ValidateMetricsConfig(config.metrics()));
  if (config.content_from_parent().max_bytes_per_second() < 0 ||
      config.content_validation_seconds() < 0) {
    return absl::InvalidArgumentError(
        "content_from_parent.max_bytes_per_second and content_validation_seconds: 0 or more");
  }
  return absl::OkStatus();
}

absl::Status PrepareDatabase(store::Connection& conn, const std::string& site_code) {
  // Replication reads this site's changes from the WAL (logical decoding).
  ASSIGN_OR_RETURN(store::Result level, conn.Exec("SHOW wal_level"));
  if (level.GetString(0, 0) != "logical") {
    return absl::FailedPreconditionError(
        absl::StrCat("the site database's server runs with wal_level = ", level.GetString(0, 0),
                     "; site servers read their changes from the WAL: set wal_level = logical (and "
                     "max_replication_slots, max_wal_senders of at least the site's links + 2) in "
                     "postgresql.conf and restart PostgreSQL"));
  }
  RETURN_IF_ERROR(replication::ApplyReplicationMigrations(conn));
  RETURN_IF_ERROR(store::ApplyMigrations(conn, "site", kSiteMigrations, kSiteMigrationsCount));
  ASSIGN_OR_RETURN(store::Result r,
                   conn.Exec("INSERT INTO repl_identity (site_code) VALUES ($1) ON CONFLICT "
                             "(singleton) DO UPDATE SET site_code = repl_identity.site_code "
                             "RETURNING site_code",
                             {site_code}));
  if (r.GetString(0, 0) != site_code) {
    return absl::FailedPreconditionError(absl::StrCat("this database belongs to site ",
                                                      r.GetString(0, 0), ", not ", site_code,
                                                      "; each site server needs its own database"));
  }
  return absl::OkStatus();
}

class SiteServer::Impl final : public v1::SiteLink::Service {
 public:
  Impl(SiteProfile profile, v1::SiteServerConfig config)
      : profile_(std::move(profile)), type_(profile_.type), config_(std::move(config)) {
    ctx_.site_code = config_.site_code();
    ctx_.site_type = type_;
    ctx_.has_parent = !config_.parent_address().empty();
    ctx_.conninfo = config_.database();
    ctx_.settings = replication::WithDefaults(config_.replication());
    ctx_.notifier = &notifier_;
    ctx_.registry = &registry_;
  }

  ~Impl() override { Shutdown(); }

  absl::Status Start() {
    RETURN_IF_ERROR(ValidateSiteConfig(type_, config_));
    SetLogComponent(absl::StrCat("site=", config_.site_code()));
    ASSIGN_OR_RETURN(store::ConnectionPtr conn, ConnectWithRetry());
    RETURN_IF_ERROR(PrepareDatabase(*conn, config_.site_code()));
    // Inventory triggers queue devices for evaluation only where
    // collections are evaluated (a primary's profile).
    RETURN_IF_ERROR(conn->Exec("UPDATE collection_evaluation SET enabled = $1",
                               {profile_.evaluates_collections ? "t" : "f"})
                        .status());
    if (config_.parent_address().empty()) {
      // A top-level site records itself; a child is recorded by its parent.
      RETURN_IF_ERROR(UpsertSite(*conn, config_.site_code(), type_, ""));
    }
    std::vector<grpc::Service*> services{this};
    content_ = std::make_unique<SiteContent>(config_, type_);
    RETURN_IF_ERROR(content_->Open());
    for (grpc::Service* s : content_->services()) services.push_back(s);
    if (profile_.clients != ClientRole::kNone) {
      ClientServiceOptions options;
      options.config = config_;
      options.notifier = &notifier_;
      options.owner_site = [this] {
        return profile_.clients == ClientRole::kOwn ? config_.site_code() : ParentCode();
      };
      clients_ = std::make_unique<ClientService>(std::move(options));
      RETURN_IF_ERROR(clients_->Start());
      services.push_back(clients_.get());
    }
    // Health for supervisors and load balancers, reflection for operators.
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    ServerOptions server_options;
    server_options.max_message_bytes = ctx_.settings.max_message_bytes();
    ASSIGN_OR_RETURN(server_, StartServer(config_.listen_address(), config_.tls(), services,
                                          server_options, &bound_address_));
    WriteAddressFile(config_.address_file(), bound_address_);
    LogInfo("site.started",
            {{"type", SiteTypeName(type_)},
             {"address", bound_address_},
             {"parent", config_.parent_address().empty() ? "-" : config_.parent_address()},
             {"version", kVersion}});
    ASSIGN_OR_RETURN(metrics_,
                     metrics::Endpoint::Start(config_.metrics(), SiteTypeName(type_),
                                              [this](metrics::Sample& s) { CollectMetrics(s); }));
    threads_.emplace_back([this] { ListenLoop(); });
    threads_.emplace_back([this] { WalWatchLoop(); });
    threads_.emplace_back([this] { PruneLoop(); });
    threads_.emplace_back([this] { TlsWatchLoop(); });
    content_->Start();
    for (const SiteJob& job : profile_.jobs) {
      threads_.emplace_back([this, &job] {
        LogDebug("site.job_started", {{"job", job.name}});
        job.run(SiteJobContext(config_, stopping_signal_));
      });
    }
    if (!config_.parent_address().empty()) threads_.emplace_back([this] { ParentLoop(); });
    return absl::OkStatus();
  }

  absl::Status Wait() {
    done_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return fatal_;
  }

  // Stops everything; a second caller waits until the first is done (the
  // destructor may run while a signal handler's Shutdown() is under way).
  void Shutdown() {
    if (!shutdown_.Begin()) return;
    metrics_.reset();  // no scrape reads what stops below
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      stopping_signal_.Notify();
      for (auto& [code, session] : child_sessions_) session->Stop();
      if (parent_session_) parent_session_->Stop();
      if (parent_stream_) parent_stream_->Cancel();
    }
    if (clients_) clients_->Shutdown();
    if (content_) content_->Stop();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    for (auto& t : threads_) t.join();
    threads_.clear();
    if (server_) server_->Wait();
    LogInfo("site.stopped");
    NotifyDone();
    shutdown_.Done();
  }

  void RequestStop(const absl::Status& fatal) {
    {
      absl::MutexLock lock(&mu_);
      if (fatal_.ok()) fatal_ = fatal;
    }
    NotifyDone();
  }

  // A refusal and a signal may both end the server: notify Wait() once.
  void NotifyDone() {
    std::call_once(done_once_, [this] { done_.Notify(); });
  }

  const std::string& bound_address() const { return bound_address_; }

  // --- SiteLink service -------------------------------------------------

  grpc::Status Attach(grpc::ServerContext* context, const v1::AttachRequest* request,
                      v1::AttachResponse* response) override {
    auto peer = PeerFromContext(*context);
    if (!peer.ok()) return ToGrpcStatus(peer.status());
    absl::Status s = AttachChild(*peer, *request);
    if (!s.ok()) {
      LogWarning(
          "site.attach_refused",
          {{"child", request->site_code()}, {"certificate", peer->ToString()}, {"error", s}});
      return ToGrpcStatus(s);
    }
    response->set_parent_site_code(config_.site_code());
    response->set_parent_site_type(type_);
    return grpc::Status::OK;
  }

  grpc::Status Replicate(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::LinkMessage, v1::LinkMessage>* stream) override {
    auto peer = PeerFromContext(*context);
    if (!peer.ok()) return ToGrpcStatus(peer.status());
    if (peer->role != "site") {
      return ToGrpcStatus(absl::PermissionDeniedError(
          absl::StrCat("only site servers replicate; the certificate is for a ", peer->role)));
    }
    auto child = LookupChild(peer->name);
    if (!child.ok()) return ToGrpcStatus(child.status());
    ServerLinkStream link_stream(context, stream);
    LinkSession session(ctx_, replication::LinkPeer{peer->name, *child, false}, link_stream);
    {
      // One session per child: a reconnecting child replaces its old one.
      absl::MutexLock lock(&mu_);
      if (stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "site server stopping");
      auto it = child_sessions_.find(peer->name);
      if (it != child_sessions_.end()) it->second->Stop();
      auto gone = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return child_sessions_.count(peer->name) == 0 || stopping_;
      };
      mu_.Await(absl::Condition(&gone));
      if (stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "site server stopping");
      child_sessions_[peer->name] = &session;
    }
    absl::Status result = session.Run();
    {
      absl::MutexLock lock(&mu_);
      child_sessions_.erase(peer->name);
    }
    return ToGrpcStatus(result);
  }

  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest*,
                         v1::SiteStatus* response) override {
    auto peer = PeerFromContext(*context);
    if (!peer.ok()) return ToGrpcStatus(peer.status());
    // Topology and errors are for the site's own tools and administrators.
    if (peer->role != "site" && peer->role != "provider" && peer->role != "admin") {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat("link status is for sites, providers and administrators, "
                                       "not ",
                                       peer->ToString()));
    }
    return ToGrpcStatus(BuildStatus(response));
  }

 private:
  absl::StatusOr<store::ConnectionPtr> ConnectWithRetry() {
    Backoff backoff(std::chrono::milliseconds(200), std::chrono::seconds(2));
    for (int attempt = 1;; ++attempt) {
      auto conn = store::Connection::Open(config_.database());
      if (conn.ok() || attempt >= 30) return conn;
      LogWarning("site.database_unavailable", {{"attempt", attempt}, {"error", conn.status()}});
      std::this_thread::sleep_for(backoff.Next());
    }
  }

  static absl::Status UpsertSite(store::Connection& conn, const std::string& code,
                                 v1::SiteType type, const std::string& parent) {
    // Written only when something changed, so reconnects do not replicate noise.
    return conn
        .Exec(
            "INSERT INTO sites (code, type, parent, version, state) VALUES ($1, $2, $3, $4, "
            "'active') ON CONFLICT (code) DO UPDATE SET type = EXCLUDED.type, parent = "
            "EXCLUDED.parent, version = EXCLUDED.version, state = EXCLUDED.state WHERE "
            "(sites.type, sites.parent, sites.version, sites.state) IS DISTINCT FROM "
            "(EXCLUDED.type, EXCLUDED.parent, EXCLUDED.version, EXCLUDED.state)",
            {code, SiteTypeName(type), parent.empty() ? store::Param() : store::Param(parent),
             std::string(kVersion)})
        .status();
  }

  absl::Status AttachChild(const PeerIdentity& peer, const v1::AttachRequest& request) {
    ASSIGN_OR_RETURN(store::ConnectionPtr conn, store::Connection::Open(config_.database()));
    ASSIGN_OR_RETURN(
        store::Result known,
        conn->Exec("SELECT code, type, coalesce(parent, '') FROM sites WHERE code = $1",
                   {request.site_code()}));
    std::optional<KnownSite> existing;
    if (!known.empty()) {
      existing = KnownSite{known.GetString(0, 0), SiteTypeFromName(known.Get(0, 1)),
                           known.GetString(0, 2)};
    }
    RETURN_IF_ERROR(CheckAttach(
        config_.site_code(), type_,
        AttachCandidate{request.site_code(), request.site_type(), peer.role, peer.name}, existing));
    RETURN_IF_ERROR(
        UpsertSite(*conn, request.site_code(), request.site_type(), config_.site_code()));
    LogInfo("site.child_attached", {{"child", request.site_code()},
                                    {"type", SiteTypeName(request.site_type())},
                                    {"version", request.version()}});
    return absl::OkStatus();
  }

  absl::StatusOr<v1::SiteType> LookupChild(const std::string& code) {
    ASSIGN_OR_RETURN(store::ConnectionPtr conn, store::Connection::Open(config_.database()));
    ASSIGN_OR_RETURN(store::Result r,
                     conn->Exec("SELECT type FROM sites WHERE code = $1 AND parent = $2",
                                {code, config_.site_code()}));
    if (r.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "site ", code, " is not attached to ", config_.site_code(), "; call Attach first"));
    }
    return SiteTypeFromName(r.Get(0, 0));
  }

  // False once the server stops.
  bool SleepUnlessStopping(std::chrono::milliseconds d) {
    return !stopping_signal_.WaitForNotificationWithTimeout(absl::FromChrono(d));
  }

  bool stopping() { return stopping_signal_.HasBeenNotified(); }

  // Turns PostgreSQL notifications (client decisions) into wake-ups of the
  // client service.
  void ListenLoop() {
    while (!stopping()) {
      auto conn = store::Connection::Open(config_.database());
      absl::Status s = conn.ok() ? (*conn)->Listen("strata_repl") : conn.status();
      while (s.ok() && !stopping()) {
        auto n = (*conn)->AwaitNotification(500);
        if (!n.ok()) {
          s = n.status();
        } else if (*n > 0) {
          notifier_.Notify();
        }
      }
      if (!s.ok()) LogWarning("site.listen_failed", {{"error", s}});
      notifier_.Notify();  // whatever happened meanwhile, look again
      SleepUnlessStopping(std::chrono::seconds(1));
    }
  }

  // Local writes (the provider's, this process's jobs', an admin's SQL)
  // wake the client service: the WAL's flush position is looked at every
  // 50 ms, and any move is a wake-up (a link's applies wake it in-process).
  // Watching costs one trivial query per look; a decoder of the whole WAL
  // (a temporary logical slot, as before) cost a third walsender on a
  // primary, and a NOTIFY per write transaction serializes commits. A
  // commit is visible a moment after its flush, so a move wakes twice, at
  // this look and the next: a look between the flush and the visibility
  // cannot leave the last write before a quiet spell unseen. A wake-up that
  // finds nothing new is harmless.
  void WalWatchLoop() {
    while (!stopping()) {
      absl::Status s = [&]() -> absl::Status {
        ASSIGN_OR_RETURN(store::ConnectionPtr conn, store::Connection::Open(config_.database()));
        std::string last;
        bool moved = false;
        while (SleepUnlessStopping(std::chrono::milliseconds(50))) {
          ASSIGN_OR_RETURN(store::Result r, conn->Exec("SELECT pg_current_wal_flush_lsn()::text"));
          std::string now = r.GetString(0, 0);
          const bool moves = !last.empty() && now != last;
          if (moves || moved) notifier_.Notify();
          moved = moves;
          last = std::move(now);
        }
        return absl::OkStatus();
      }();
      if (!s.ok() && !stopping()) LogWarning("site.wal_watch_failed", {{"error", s}});
      notifier_.Notify();  // whatever happened meanwhile, look again
      SleepUnlessStopping(std::chrono::seconds(1));
    }
  }

  void PruneLoop() {
    const auto period =
        std::chrono::seconds(std::clamp<int64_t>(ctx_.settings.retention_seconds() / 4, 1, 60));
    while (SleepUnlessStopping(period)) {
      auto conn = store::Connection::Open(config_.database());
      if (!conn.ok()) continue;
      absl::StatusOr<int64_t> pruned;
      absl::Status s = (*conn)->Transact([&](store::Transaction& tx) -> absl::Status {
        ASSIGN_OR_RETURN(store::Result peers, tx.Exec("SELECT code FROM sites WHERE parent = $1",
                                                      {config_.site_code()}));
        std::vector<std::string> codes;
        for (size_t i = 0; i < peers.size(); ++i) codes.push_back(peers.GetString(i, 0));
        std::string parent = ParentCode();
        if (!parent.empty()) codes.push_back(parent);
        pruned = replication::PruneLog(tx, ctx_.settings.retention_seconds(), codes);
        RETURN_IF_ERROR(pruned.status());
        ASSIGN_OR_RETURN(int64_t dropped,
                         replication::DropLapsedSlots(tx, config_.site_code(),
                                                      ctx_.settings.retention_seconds(), codes));
        if (dropped > 0) LogInfo("site.slots_dropped", {{"slots", dropped}});
        return absl::OkStatus();
      });
      if (!s.ok()) LogWarning("site.prune_failed", {{"error", s}});
    }
  }

  // A renewed certificate, key or CA file ends the link to the parent,
  // which reconnects at once with the new files (the server side needs
  // nothing: gRPC serves renewed files to new connections by itself).
  void TlsWatchLoop() {
    const auto period = std::chrono::seconds(RefreshSeconds(config_.tls()));
    while (SleepUnlessStopping(period)) {
      const std::string now = TlsFilesStamp(config_.tls());
      absl::MutexLock lock(&mu_);
      if (parent_stream_ != nullptr && now != parent_tls_stamp_) {
        LogInfo("site.tls_changed", {{"action", "ending the link to the parent to reconnect"}});
        parent_tls_stamp_ = now;
        parent_stream_->Cancel();
      }
    }
  }

  std::string ParentCode() {
    absl::MutexLock lock(&mu_);
    return parent_code_;
  }

  // The child side of the link to the parent: attach, replicate, reconnect
  // with backoff; exit on a refusal.
  void ParentLoop() {
    ChannelOptions options;
    options.max_message_bytes = ctx_.settings.max_message_bytes();
    options.reconnect_max_backoff_ms = ctx_.settings.max_backoff_ms();
    std::string tls_stamp = TlsFilesStamp(config_.tls());
    auto channel = MakeChannel(config_.parent_address(), config_.tls(), options);
    if (!channel.ok()) {
      RequestStop(channel.status());
      return;
    }
    auto stub = v1::SiteLink::NewStub(*channel);
    Backoff backoff(std::chrono::milliseconds(100),
                    std::chrono::milliseconds(ctx_.settings.max_backoff_ms()));
    // Until the parent has answered once, its link is listed under this name.
    const std::string kUnknownParent = "parent";
    std::string peer_label = kUnknownParent;
    while (!stopping()) {
      // Renewed certificate files: a new channel presents the new one.
      if (std::string now = TlsFilesStamp(config_.tls()); now != tls_stamp) {
        auto renewed = MakeChannel(config_.parent_address(), config_.tls(), options);
        if (renewed.ok()) {
          LogInfo("site.tls_renewed", {{"link", "parent"}, {"action", "reconnecting with it"}});
          channel = std::move(renewed);
          stub = v1::SiteLink::NewStub(*channel);
          tls_stamp = now;
        } else {
          // Keep the link on what works, without ending it again for these files.
          LogWarning("site.tls_unusable", {{"error", renewed.status()}});
          tls_stamp = now;
        }
      }
      grpc::ClientContext attach_ctx;
      attach_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::AttachRequest req;
      req.set_site_code(config_.site_code());
      req.set_site_type(type_);
      req.set_version(kVersion);
      v1::AttachResponse resp;
      absl::Status s = FromGrpcStatus(stub->Attach(&attach_ctx, req, &resp));
      if (s.ok() && resp.parent_site_code().empty())
        s = absl::InternalError("parent sent no site code");
      if (!s.ok()) {
        if (IsRefusal(s.code())) {
          LogError("site.refused_by_parent", {{"parent", config_.parent_address()}, {"error", s}});
          RequestStop(Annotate(s, "the parent refused this site"));
          return;
        }
        registry_.Update(peer_label, [&](LinkCounters& c) {
          c.peer_is_parent = true;
          c.connected = false;
          c.last_error = s.ToString();
          if (c.disconnected_since_unix_ms == 0) c.disconnected_since_unix_ms = WallClockMs();
        });
        LogWarning("site.parent_unreachable", {{"parent", config_.parent_address()}, {"error", s}});
      } else {
        {
          absl::MutexLock lock(&mu_);
          parent_code_ = resp.parent_site_code();
        }
        if (peer_label == kUnknownParent) registry_.Remove(kUnknownParent);
        peer_label = resp.parent_site_code();
        auto started = std::chrono::steady_clock::now();
        auto stream = std::make_unique<ClientLinkStream>(stub.get());
        LinkSession session(
            ctx_, replication::LinkPeer{resp.parent_site_code(), resp.parent_site_type(), true},
            *stream);
        {
          absl::MutexLock lock(&mu_);
          if (stopping_) break;
          parent_session_ = &session;
          parent_stream_ = stream.get();
          parent_tls_stamp_ = tls_stamp;
        }
        absl::Status result = session.Run();
        stream->Cancel();
        absl::Status finish = FromGrpcStatus(stream->Finish());
        {
          absl::MutexLock lock(&mu_);
          parent_session_ = nullptr;
          parent_stream_ = nullptr;
        }
        if (result.ok() && finish.code() != absl::StatusCode::kCancelled) result = finish;
        if (!result.ok()) {
          registry_.Update(peer_label, [&](LinkCounters& c) { c.last_error = result.ToString(); });
        }
        backoff.ResetIfLived(std::chrono::steady_clock::now() - started);
      }
      if (!SleepUnlessStopping(backoff.Next())) break;
    }
  }

  absl::Status BuildStatus(v1::SiteStatus* out) {
    out->set_site_code(config_.site_code());
    out->set_site_type(type_);
    out->set_parent_site_code(ParentCode());
    out->set_version(kVersion);
    ASSIGN_OR_RETURN(store::ConnectionPtr conn, store::Connection::Open(config_.database()));
    return conn->Transact([&](store::Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(replication::LogHead head, replication::ReadLogHead(tx));
      out->set_log_epoch(head.epoch);
      ASSIGN_OR_RETURN(store::Result wal,
                       tx.Exec("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"));
      out->set_log_last_id(wal.GetInt(0, 0));
      return AddLinkStatuses(tx, config_.site_code(), registry_.Snapshot(), ctx_.settings, out);
    });
  }

  // A scrape of the metrics endpoint (on its own thread): the links, as
  // GetStatus gives them but without decoding a disconnected peer's slot,
  // and the database's figures; one connection, statements bounded in time.
  void CollectMetrics(metrics::Sample& s) {
    metrics::Sample read;
    auto conn = store::Connection::Open(config_.database());
    absl::Status st = conn.ok() ? (*conn)->Transact([&](store::Transaction& tx) -> absl::Status {
      read = metrics::Sample();
      RETURN_IF_ERROR(tx.Exec("SET LOCAL statement_timeout = '5s'").status());
      v1::SiteStatus status;
      ASSIGN_OR_RETURN(store::Result wal,
                       tx.Exec("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"));
      status.set_log_last_id(wal.GetInt(0, 0));
      RETURN_IF_ERROR(AddLinkStatuses(tx, config_.site_code(), registry_.Snapshot(), ctx_.settings,
                                      &status, /*peek=*/false));
      AddLinkMetrics(status, read);
      return AddDatabaseMetrics(tx, config_.site_code(), read);
    })
                                : conn.status();
    if (st.ok()) s.Absorb(std::move(read));
    s.Gauge("strata_database_up", "1 when the site's database answered this scrape",
            st.ok() ? 1 : 0);
    if (!st.ok()) LogWarning("site.metrics_failed", {{"error", st}});
  }

  const SiteProfile profile_;
  const v1::SiteType type_;
  const v1::SiteServerConfig config_;
  absl::Notification stopping_signal_;  // the jobs' (SiteJobContext)
  replication::ChangeNotifier notifier_;
  replication::LinkRegistry registry_;
  replication::SiteContext ctx_;
  std::unique_ptr<ClientService> clients_;
  std::unique_ptr<SiteContent> content_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::Endpoint> metrics_;
  std::string bound_address_;
  std::vector<std::thread> threads_;
  absl::Notification done_;
  ShutdownGuard shutdown_;
  std::once_flag done_once_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  std::string parent_code_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, LinkSession*> child_sessions_ ABSL_GUARDED_BY(mu_);
  LinkSession* parent_session_ ABSL_GUARDED_BY(mu_) = nullptr;
  ClientLinkStream* parent_stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string parent_tls_stamp_ ABSL_GUARDED_BY(mu_);  // the files parent_stream_ uses
};

SiteServer::SiteServer(SiteProfile profile, v1::SiteServerConfig config)
    : impl_(std::make_unique<Impl>(std::move(profile), std::move(config))) {}
SiteServer::~SiteServer() = default;
absl::Status SiteServer::Start() { return impl_->Start(); }
absl::Status SiteServer::Wait() { return impl_->Wait(); }
void SiteServer::Shutdown() { impl_->Shutdown(); }
const std::string& SiteServer::bound_address() const { return impl_->bound_address(); }

}  // namespace strata::site
