#include "mp/mp_server.h"

#include <algorithm>
#include <atomic>

#include <mutex>  // std::call_once
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/shutdown_guard.h"
#include "common/base/status.h"
#include "common/metrics/metrics.h"
#include "common/net/tls.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "mp/agent_service.h"
#include "mp/client_directory.h"
#include "mp/nudge_server.h"
#include "mp/open_files.h"
#include "mp/presence.h"
#include "mp/register_limit.h"
#include "mp/site_client.h"
#include "mp/site_uplink.h"
#include "mp/spool.h"

namespace strata::mp {
namespace {

constexpr int kAgentKeepaliveMs = 60000;
constexpr int kAgentConnectionIdleMs = 3000;
constexpr int kDefaultRegisterPerSourcePerMinute = 120;
// Measured on 2 cores (bench/mp): an MP completes ~260 fresh gRPC
// connections with a call each per second. Told faster, a fleet's fetches
// pile up as connections in flight until the open files run out (seen at
// 1,000/s with 17,500 clients: gRPC's accept failed and the MP stopped).
constexpr int kDefaultFetchesPerSecond = 200;
constexpr int kDefaultRegisterPerMinute = 3000;

absl::Status CheckedFields(const v1::MpConfig& c) {
  auto need = [](const std::string& v, const char* field, const char* what) {
    return v.empty() ? absl::InvalidArgumentError(absl::StrCat(field, ": required (", what, ")"))
                     : absl::OkStatus();
  };
  RETURN_IF_ERROR(need(c.name(), "name", "the certificate's CN, e.g. P01.mp1"));
  RETURN_IF_ERROR(need(c.site_address(), "site_address", "the site server this MP serves"));
  RETURN_IF_ERROR(need(c.listen_address(), "listen_address", "host:port or unix:/path"));
  RETURN_IF_ERROR(need(c.spool_dir(), "spool_dir", "a directory for the durable spool"));
  RETURN_IF_ERROR(metrics::ValidateMetricsConfig(c.metrics()));
  if (c.tls().ca_file().empty() || c.tls().cert_file().empty() || c.tls().key_file().empty()) {
    return absl::InvalidArgumentError("tls: ca_file, cert_file and key_file are all required");
  }
  return absl::OkStatus();
}

}  // namespace

std::string NudgePublicAddress(const v1::MpConfig& config, const std::string& nudge_bound) {
  if (!config.nudge_public_address().empty()) return config.nudge_public_address();
  const std::string& pub = config.public_address();
  if (pub.empty() || absl::StartsWith(pub, "unix:") || absl::StartsWith(nudge_bound, "unix:")) {
    return nudge_bound;
  }
  // Agents reach this MP by the host in its public address: the nudge
  // channel is on that host too, at the port it is bound to.
  return absl::StrCat(pub.substr(0, pub.rfind(':')), nudge_bound.substr(nudge_bound.rfind(':')));
}

absl::Status ValidateMpConfig(const v1::MpConfig& config) {
  RETURN_IF_ERROR(CheckedFields(config));
  ASSIGN_OR_RETURN(std::string pem, ReadFile(config.tls().cert_file()));
  ASSIGN_OR_RETURN(PeerIdentity id, IdentityFromPem(pem));
  if (id.role != "mp" || id.name != config.name()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.cert_file: the certificate names ", id.ToString(), "; a management point named ",
        config.name(), " needs OU=mp, CN=", config.name()));
  }
  if (config.name().size() < 5 || config.name()[3] != '.') {
    return absl::InvalidArgumentError("name: must be <SITE>.<name>, e.g. P01.mp1");
  }
  return absl::OkStatus();
}

class MpServer::Impl {
 public:
  explicit Impl(v1::MpConfig config) : config_(std::move(config)) {
    if (config_.max_report_bytes() <= 0) config_.set_max_report_bytes(8 << 20);
    if (config_.batch_max_reports() <= 0) config_.set_batch_max_reports(500);
    if (config_.client_recheck_seconds() <= 0) config_.set_client_recheck_seconds(300);
    if (config_.status_interval_seconds() <= 0) config_.set_status_interval_seconds(60);
    if (config_.nudge_listen_address().empty()) {
      config_.set_nudge_listen_address(DefaultNudgeAddress(config_.listen_address()));
    }
    if (config_.nudge_keepalive_seconds() <= 0) config_.set_nudge_keepalive_seconds(120);
    if (config_.nudge_fetches_per_second() <= 0) {
      config_.set_nudge_fetches_per_second(kDefaultFetchesPerSecond);
    }
    if (config_.register_per_source_per_minute() == 0) {
      config_.set_register_per_source_per_minute(kDefaultRegisterPerSourcePerMinute);
    }
    if (config_.register_per_minute() == 0) {
      config_.set_register_per_minute(kDefaultRegisterPerMinute);
    }
  }
  ~Impl() { Shutdown(); }

  absl::Status Start() {
    RETURN_IF_ERROR(ValidateMpConfig(config_));
    SetLogComponent(absl::StrCat("mp=", config_.name()));
    WatchGrpcLog();
    const int64_t open_files = RaiseOpenFileLimit();
    ASSIGN_OR_RETURN(spool_, Spool::Open(config_.spool_dir(), Spool::Options()));
    ASSIGN_OR_RETURN(auto channel, MakeChannel(config_.site_address(), config_.tls()));
    site_ = MakeSiteClient(channel);
    ClientDirectory::Hooks hooks;
    hooks.refused = [this](const std::string& id) {
      nudge_->Close(id, "this client's registration was revoked or blocked");
    };
    hooks.policy_changed = [this](const std::vector<std::string>& ids) {
      nudge_->Push(ids, v1::NOTIFICATION_KIND_POLICY_CHANGED);
    };
    hooks.listening = [this] { return nudge_->Ids(); };
    directory_ = std::make_unique<ClientDirectory>(
        *site_, absl::Seconds(config_.client_recheck_seconds()), std::move(hooks));
    LoadSavedBundle();

    // Agents hold the nudge channel, one connection (an open file) each;
    // their gRPC connections come and go with their work.
    NudgeServer::Options nudge;
    nudge.listen_address = config_.nudge_listen_address();
    nudge.tls = config_.tls();
    nudge.max_clients = MaxNudgeClients(open_files);
    nudge.keepalive_s = config_.nudge_keepalive_seconds();
    nudge.fetches_per_second = config_.nudge_fetches_per_second();
    NudgeServer::Hooks nudge_hooks;
    nudge_hooks.authorize = [this](const std::string& id, std::function<void(absl::Status)> then) {
      directory_->Check(id, std::move(then));
    };
    nudge_hooks.policy = [this](const std::string& id) { return directory_->PolicyOf(id); };
    nudge_hooks.full_requested = [this](const std::string& id) {
      return directory_->HasFullRequest(id);
    };
    nudge_hooks.presence = [this](const std::string& id, bool online) {
      presence_.Set(id, online);
    };
    nudge_hooks.report = [this](const std::string& id, const v1::ReportRequest& reports,
                                std::function<void(absl::StatusOr<int64_t>)> done) {
      AgentService* service = agent_service_ready_.load();
      if (service == nullptr) {
        done(absl::UnavailableError("the management point is starting"));
        return;
      }
      service->Accept(id, reports, std::move(done));
    };
    ASSIGN_OR_RETURN(nudge_, NudgeServer::Start(std::move(nudge), std::move(nudge_hooks)));

    ServerOptions server_options;
    server_options.max_message_bytes = config_.max_report_bytes();
    server_options.keepalive_ms = kAgentKeepaliveMs;
    // Agents hold the nudge channel; a gRPC connection is for work. Closed
    // by the MP once idle, whatever the agent does: seen with gRPC 1.51, a
    // client's idle timeout let its connection go the first time only, and
    // 17,500 simulated agents' report connections then ran the MP out of
    // open files.
    server_options.max_connection_idle_ms = kAgentConnectionIdleMs;
    // Agents register before they hold a certificate.
    server_options.require_client_certificate = false;
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    // Without a public address, agents are told the bound one (known once
    // the server listens).
    std::string bound;
    register_limit_ = std::make_unique<RegisterLimit>(config_.register_per_source_per_minute(),
                                                      config_.register_per_minute());
    agent_service_ = std::make_unique<AgentService>(*site_, *directory_, *spool_, *register_limit_);
    agent_service_ready_ = agent_service_.get();
    ASSIGN_OR_RETURN(server_, StartServer(config_.listen_address(), config_.tls(),
                                          {agent_service_.get()}, server_options, &bound));
    bound_address_ = bound;
    agent_service_->set_addresses(
        config_.public_address().empty() ? bound_address_ : config_.public_address(),
        NudgePublicAddress(config_, nudge_->bound_address()));
    WriteAddressFile(config_.address_file(), bound_address_);

    UplinkOptions uplink;
    uplink.hello.set_name(config_.name());
    uplink.hello.set_address(config_.public_address().empty() ? bound_address_
                                                              : config_.public_address());
    uplink.hello.set_version(kVersion);
    uplink.site_address = config_.site_address();
    uplink.batch_max_reports = config_.batch_max_reports();
    uplink.status_every = absl::Seconds(config_.status_interval_seconds());
    uplink_ = std::make_unique<SiteUplink>(*site_, *spool_, uplink, UplinkHandlersFor());

    LogInfo("mp.started", {{"address", bound_address_},
                           {"nudge_address", nudge_->bound_address()},
                           {"site", config_.site_address()},
                           {"spooled", spool_->last_seq() - spool_->acknowledged()},
                           {"open_files", open_files},
                           {"max_clients", MaxNudgeClients(open_files)}});
    directory_->Start();
    uplink_->Start();
    ASSIGN_OR_RETURN(metrics_,
                     metrics::Endpoint::Start(config_.metrics(), "mp",
                                              [this](metrics::Sample& s) { CollectMetrics(s); }));
    watch_ = std::thread([this] { ListenerWatch(); });
    return absl::OkStatus();
  }

  absl::Status Wait() {
    done_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return fatal_;
  }

  void Shutdown() {
    if (!shutdown_.Begin()) return;
    metrics_.reset();  // no scrape reads what stops below
    stopping_.Notify();
    if (uplink_) uplink_->Stop();
    if (nudge_) nudge_->Stop("management point stopping");
    // Calls waiting for a client lookup are answered before the server
    // waits for its calls to end.
    if (directory_) directory_->Stop();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (watch_.joinable()) watch_.join();
    if (server_) server_->Wait();
    // What uses the spool goes before it.
    uplink_.reset();
    spool_.reset();
    LogInfo("mp.stopped");
    std::call_once(done_once_, [this] { done_.Notify(); });
    shutdown_.Done();
  }

  const std::string& bound_address() const { return bound_address_; }

 private:
  // A scrape of the metrics endpoint (on its own thread).
  void CollectMetrics(metrics::Sample& s) {
    s.Gauge("strata_mp_nudge_channels", "Agents holding a nudge channel to this MP",
            static_cast<double>(nudge_->held()));
    s.Gauge("strata_mp_spool_pending_records",
            "Client reports spooled and not yet acknowledged by the site",
            // Two reads: clamped, as an acknowledgement may land between them.
            static_cast<double>(std::max<int64_t>(0, spool_->last_seq() - spool_->acknowledged())));
    s.Counter("strata_mp_spool_records_total", "Client reports spooled (the spool's sequence)",
              static_cast<double>(spool_->last_seq()));
    s.Gauge("strata_mp_site_connected", "1 while the MP's stream to its site server is open",
            uplink_->connected() ? 1 : 0);
  }

  UplinkHandlers UplinkHandlersFor() {
    UplinkHandlers h;
    h.bundle = [this](const v1::SiteBundle& b, bool first) {
      if (directory_->SetBundle(b)) {
        // Served while the site server is away, after a restart.
        absl::Status s =
            WriteFileDurably(config_.spool_dir() + "/bundle.pb", b.SerializeAsString());
        if (!s.ok()) LogWarning("mp.bundle_not_saved", {{"error", s}});
      }
      if (first) directory_->RequestRecheck();
    };
    h.assignments = [this](const std::vector<Assignment>& changes) {
      directory_->ApplyPushed(changes);
    };
    h.request = [this](const v1::ClientRequest& r) {
      if (r.kind() == v1::NOTIFICATION_KIND_FULL_INVENTORY) {
        directory_->RequestFullInventory(r.client_id());
      }
      nudge_->Push({r.client_id()}, r.kind());
    };
    h.access_changed = [this](const std::vector<std::string>& ids) {
      LogInfo("mp.client_access_changed", {{"clients", ids.size()}});
      directory_->RecheckSoon(ids);
    };
    h.clients_connected = [this] { return nudge_->held(); };
    h.presence_pending = [this] { return presence_.Pending(); };
    h.presence = [this](v1::MpStatus* status, bool full) {
      presence_.Take(status, full, [this] { return nudge_->Ids(); });
    };
    return h;
  }

  void LoadSavedBundle() {
    auto bytes = ReadFile(config_.spool_dir() + "/bundle.pb");
    v1::SiteBundle b;
    if (bytes.ok() && !bytes->empty() && b.ParseFromString(*bytes) && !b.version().empty()) {
      directory_->LoadBundle(b);  // serve policy while the site server is away
    }
  }

  // gRPC 1.51 stops accepting connections for good after one accept()
  // fails (open_files.h). Then the MP stops with an error (exit code 1) for
  // its supervisor to restart it: the spool keeps every acknowledged
  // report, agents reconnect.
  void ListenerWatch() {
    while (!stopping_.WaitForNotificationWithTimeout(absl::Seconds(1))) {
      if (!AcceptFailed()) continue;
      LogError("mp.listener_dead",
               {{"address", bound_address_},
                {"action", "stopping; the supervisor restarts the MP, the spool is kept"}});
      {
        absl::MutexLock lock(&mu_);
        fatal_ = absl::UnavailableError(
            absl::StrCat("the agent listener on ", bound_address_,
                         " stopped accepting connections (accept failed: out of open files?)"));
      }
      std::call_once(done_once_, [this] { done_.Notify(); });  // Wait() returns; main stops
      return;
    }
  }

  v1::MpConfig config_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<SiteClient> site_;
  Presence presence_;  // told by nudge_, read by the uplink (outlives both)
  // Before the directory: its lookups may still answer a connection being
  // authorized while it stops.
  std::unique_ptr<NudgeServer> nudge_;
  std::unique_ptr<ClientDirectory> directory_;
  std::unique_ptr<RegisterLimit> register_limit_;
  std::unique_ptr<AgentService> agent_service_;
  // Set once agent_service_ serves (the nudge server starts before it).
  std::atomic<AgentService*> agent_service_ready_{nullptr};
  std::unique_ptr<SiteUplink> uplink_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::Endpoint> metrics_;
  std::string bound_address_;
  std::thread watch_;
  absl::Notification stopping_;
  absl::Notification done_;
  std::once_flag done_once_;
  ShutdownGuard shutdown_;
  absl::Mutex mu_;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);  // what Wait() returns
};

MpServer::MpServer(v1::MpConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
MpServer::~MpServer() = default;
absl::Status MpServer::Start() { return impl_->Start(); }
absl::Status MpServer::Wait() { return impl_->Wait(); }
void MpServer::Shutdown() { impl_->Shutdown(); }
const std::string& MpServer::bound_address() const { return impl_->bound_address(); }

}  // namespace strata::mp
