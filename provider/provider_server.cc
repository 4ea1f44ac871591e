#include "provider/provider_server.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/log.h"
#include "common/base/shutdown_guard.h"
#include "common/base/status.h"
#include "common/metrics/metrics.h"
#include "common/net/tls.h"
#include "common/store/pool.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "provider/core.h"
#include "provider/input.h"
#include "provider/resource.h"

namespace strata::provider {

absl::Status ValidateProviderConfig(const v1::ProviderConfig& c) {
  if (c.database().empty()) return absl::InvalidArgumentError("database: required");
  if (c.listen_address().empty()) return absl::InvalidArgumentError("listen_address: required");
  if (c.tls().ca_file().empty() || c.tls().cert_file().empty() || c.tls().key_file().empty()) {
    return absl::InvalidArgumentError("tls: ca_file, cert_file and key_file are required");
  }
  RETURN_IF_ERROR(metrics::ValidateMetricsConfig(c.metrics()));
  if (!c.bootstrap_admin().empty()) {
    RETURN_IF_ERROR(CheckName("bootstrap_admin", c.bootstrap_admin()));
  }
  return absl::OkStatus();
}

// Connections kept open between calls (more are opened under load, then
// closed): admins' tools and scripts call concurrently, and a connection
// opened per call costs the database a process start (bench/runbooks: 16
// calls at once against 8 kept churned a connection per call).
constexpr size_t kPoolConnections = 32;

class ProviderServer::Impl {
 public:
  explicit Impl(v1::ProviderConfig config)
      : config_(std::move(config)), pool_(config_.database(), kPoolConnections) {}
  ~Impl() { Shutdown(); }

  absl::Status Start() {
    RETURN_IF_ERROR(ValidateProviderConfig(config_));
    // A child site is recorded by its parent: right after the site server
    // first attaches, that record may still be on its way down.
    absl::Status ready;
    for (int attempt = 0; attempt < 120; ++attempt) {
      ready = pool_.With([&](store::Connection& conn) { return CheckSite(conn); });
      if (ready.ok() || !absl::IsUnavailable(ready)) break;
      if (attempt == 0) LogInfo("provider.waiting_for_site", {{"reason", ready}});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    RETURN_IF_ERROR(ready);
    core_ = std::make_unique<CallCore>(pool_, site_, KnownPermissions());
    RETURN_IF_ERROR(pool_.With([&](store::Connection& conn) { return Bootstrap(conn); }));
    ResourceContext context{core_.get(), &config_, site_, site_type_, nullptr};
    if (!config_.site_address().empty()) {
      ASSIGN_OR_RETURN(context.site_channel, MakeChannel(config_.site_address(), config_.tls()));
    }
    std::vector<grpc::Service*> services;
    for (const Resource& r : Resources()) {
      services_.push_back(r.make(context));
      services.push_back(services_.back().get());
    }
    SetLogComponent(absl::StrCat("provider=", site_));
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    ServerOptions options;
    options.max_message_bytes = 4 << 20;
    options.require_client_certificate = true;
    ASSIGN_OR_RETURN(server_, StartServer(config_.listen_address(), config_.tls(), services,
                                          options, &bound_address_));
    WriteAddressFile(config_.address_file(), bound_address_);
    ASSIGN_OR_RETURN(metrics_,
                     metrics::Endpoint::Start(config_.metrics(), "provider",
                                              [this](metrics::Sample& s) { CollectMetrics(s); }));
    LogInfo("provider.started", {{"site", site_},
                                 {"type", site_type_},
                                 {"address", bound_address_},
                                 {"resources", Resources().size()}});
    return absl::OkStatus();
  }

  absl::Status Wait() {
    stopped_.WaitForNotification();
    return absl::OkStatus();
  }

  void Shutdown() {
    if (!shutdown_.Begin()) return;
    metrics_.reset();
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      server_->Wait();
      LogInfo("provider.stopped");
    }
    stopped_.Notify();
    shutdown_.Done();
  }

  const std::string& bound_address() const { return bound_address_; }

 private:
  // A scrape of the metrics endpoint (on its own thread).
  void CollectMetrics(metrics::Sample& s) {
    std::vector<int64_t> calls = core_->CallsByCode();
    for (size_t i = 0; i < calls.size(); ++i) {
      s.Counter("strata_provider_calls_total", "Admin API calls answered, by gRPC status code",
                static_cast<double>(calls[i]),
                {{"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(i))}});
    }
    absl::Status db =
        pool_.With([](store::Connection& conn) { return conn.Exec("SELECT 1").status(); });
    s.Gauge("strata_database_up", "1 when the site's database answered this scrape",
            db.ok() ? 1 : 0);
  }

  // Which site this database is, and that it may have a provider.
  // Unavailable while the site has not joined its hierarchy yet.
  absl::Status CheckSite(store::Connection& conn) {
    ASSIGN_OR_RETURN(Result id, conn.Exec("SELECT site_code FROM repl_identity"));
    if (id.empty()) {
      return absl::UnavailableError("this database has no site yet: start its site server first");
    }
    site_ = id.GetString(0, 0);
    ASSIGN_OR_RETURN(Result type, conn.Exec("SELECT type FROM sites WHERE code = $1", {site_}));
    if (type.empty()) {
      return absl::UnavailableError(absl::StrCat(
          "site ", site_, " has not joined its hierarchy yet (its parent records it)"));
    }
    site_type_ = type.GetString(0, 0);
    if (site_type_ == "secondary") {
      return absl::FailedPreconditionError(absl::StrCat(
          "site ", site_, " is a secondary site: a provider runs at the CAS or a primary"));
    }
    return absl::OkStatus();
  }

  absl::Status Bootstrap(store::Connection& conn) {
    if (config_.bootstrap_admin().empty()) return absl::OkStatus();
    return conn.Transact([&](Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(Result any, tx.Exec("SELECT 1 FROM administrators LIMIT 1"));
      if (!any.empty()) return absl::OkStatus();
      RETURN_IF_ERROR(tx.Exec("INSERT INTO administrators (name, roles, scopes, collections, "
                              "created_by) VALUES ($1, '{Full Administrator}', '{All}', "
                              "'{All Systems}', 'bootstrap')",
                              {config_.bootstrap_admin()})
                          .status());
      LogInfo("provider.bootstrap_admin", {{"admin", config_.bootstrap_admin()}});
      return WriteAudit(
          tx, site_,
          AuditEntry{"bootstrap", "create", "administrator", config_.bootstrap_admin(), "ok",
                     "first administrator: Full Administrator, scopes=All"});
    });
  }

  const v1::ProviderConfig config_;
  store::ConnectionPool pool_;
  std::string site_, site_type_;
  std::unique_ptr<CallCore> core_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::Endpoint> metrics_;
  std::string bound_address_;
  ShutdownGuard shutdown_;
  absl::Notification stopped_;  // Wait() returns
};

ProviderServer::ProviderServer(v1::ProviderConfig config)
    : impl_(std::make_unique<Impl>(std::move(config))) {}
ProviderServer::~ProviderServer() = default;
absl::Status ProviderServer::Start() { return impl_->Start(); }
absl::Status ProviderServer::Wait() { return impl_->Wait(); }
void ProviderServer::Shutdown() { impl_->Shutdown(); }
const std::string& ProviderServer::bound_address() const { return impl_->bound_address(); }

}  // namespace strata::provider
