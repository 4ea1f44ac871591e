#include "mp/mp_server.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/base/log.h"
#include "common/base/shutdown_guard.h"
#include "common/base/status.h"
#include "common/inventory/report_check.h"
#include "common/net/tls.h"
#include "common/policy/client_settings.h"
#include "grpc/support/log.h"
#include "grpcpp/support/server_callback.h"
#include "mp/locate.h"
#include "mp/spool.h"
#include "strata/v1/client.grpc.pb.h"

namespace strata::mp {
namespace {

constexpr int kMaxReportsPerRequest = 1000;
constexpr int kMaxInFlightBatches = 2;
constexpr int64_t kBatchBytes = 4 << 20;
constexpr size_t kMaxQueuedNotifications = 8;
constexpr int kAgentKeepaliveMs = 60000;
// Open files kept free of notification streams: for short calls, the spool,
// the site link. gRPC (1.51) stops accepting for good after one accept()
// fails with EMFILE, so the MP must never run out.
constexpr int64_t kFdReserve = 512;  // at most a quarter of the limit

// Set when gRPC reports that its listener's accept() failed: it then stops
// accepting for good (gRPC 1.51, tcp_server_posix.cc).
std::atomic<bool> g_accept_failed{false};

// gRPC's log lines, as gRPC prints them by default, watching for the above.
void GrpcLog(gpr_log_func_args* args) {
  if (std::strstr(args->message, "Failed accept4") != nullptr) g_accept_failed = true;
  std::fprintf(stderr, "%s %s:%d] %s\n", gpr_log_severity_string(args->severity), args->file,
               args->line, args->message);
}

// Raises the soft open-file limit to the hard one; returns the limit.
int64_t RaiseOpenFileLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  rlim_t target = rl.rlim_max;
  if (target == RLIM_INFINITY) {  // setrlimit refuses more than fs.nr_open
    target = 1 << 20;
    if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "r")) {
      unsigned long n = 0;
      if (std::fscanf(f, "%lu", &n) == 1 && n > 0) target = n;
      std::fclose(f);
    }
  }
  if (rl.rlim_cur < target) {
    rlimit raised = rl;
    raised.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return rl.rlim_cur == RLIM_INFINITY ? int64_t{1} << 20 : static_cast<int64_t>(rl.rlim_cur);
}

absl::Status CheckedFields(const v1::MpConfig& c) {
  auto need = [](const std::string& v, const char* field, const char* what) {
    return v.empty() ? absl::InvalidArgumentError(absl::StrCat(field, ": required (", what, ")"))
                     : absl::OkStatus();
  };
  RETURN_IF_ERROR(need(c.name(), "name", "the certificate's CN, e.g. P01.mp1"));
  RETURN_IF_ERROR(need(c.site_address(), "site_address", "the site server this MP serves"));
  RETURN_IF_ERROR(need(c.listen_address(), "listen_address", "host:port or unix:/path"));
  RETURN_IF_ERROR(need(c.spool_dir(), "spool_dir", "a directory for the durable spool"));
  if (c.tls().ca_file().empty() || c.tls().cert_file().empty() || c.tls().key_file().empty()) {
    return absl::InvalidArgumentError("tls: ca_file, cert_file and key_file are all required");
  }
  return absl::OkStatus();
}

}  // namespace

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

class MpServer::Impl final : public v1::ManagementPoint::CallbackService {
  // A client and the custom client settings that reach it (sorted names).
  using Assignment = std::pair<std::string, std::vector<std::string>>;

 public:
  explicit Impl(v1::MpConfig config) : config_(std::move(config)) {
    if (config_.max_report_bytes() <= 0) config_.set_max_report_bytes(8 << 20);
    if (config_.batch_max_reports() <= 0) config_.set_batch_max_reports(500);
    if (config_.client_recheck_seconds() <= 0) config_.set_client_recheck_seconds(300);
  }
  ~Impl() override { Shutdown(); }

  absl::Status Start() {
    RETURN_IF_ERROR(ValidateMpConfig(config_));
    SetLogComponent(absl::StrCat("mp=", config_.name()));
    gpr_set_log_function(GrpcLog);
    const int64_t open_files = RaiseOpenFileLimit();
    max_streams_ = open_files - std::min(kFdReserve, open_files / 4);
    ASSIGN_OR_RETURN(spool_, Spool::Open(config_.spool_dir(), Spool::Options()));
    LoadSavedBundle();
    ChannelOptions options;
    ASSIGN_OR_RETURN(auto channel, MakeChannel(config_.site_address(), config_.tls(), options));
    stub_ = v1::SiteClients::NewStub(channel);
    ServerOptions server_options;
    server_options.max_message_bytes = config_.max_report_bytes();
    // Tens of thousands of agents hold a stream each: ping them rarely.
    server_options.keepalive_ms = kAgentKeepaliveMs;
    // Agents register before they hold a certificate.
    server_options.require_client_certificate = false;
    ASSIGN_OR_RETURN(server_, StartServer(config_.listen_address(), config_.tls(), {this},
                                          server_options, &bound_address_));
    public_address_ = config_.public_address().empty() ? bound_address_ : config_.public_address();
    WriteAddressFile(config_.address_file(), bound_address_);
    LogInfo("mp.started", {{"address", bound_address_},
                           {"site", config_.site_address()},
                           {"spooled", spool_->last_seq() - spool_->acknowledged()},
                           {"open_files", open_files},
                           {"max_streams", max_streams_}});
    threads_.emplace_back([this] { SiteLoop(); });
    threads_.emplace_back([this] { LookupLoop(); });
    threads_.emplace_back([this] { ListenerWatch(); });
    return absl::OkStatus();
  }

  absl::Status Wait() {
    done_.WaitForNotification();
    std::lock_guard<std::mutex> lock(mu_);
    return fatal_;
  }

  // Stops everything; a second caller waits until the first is done.
  void Shutdown() {
    if (!shutdown_.Begin()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      if (site_ctx_) site_ctx_->TryCancel();
    }
    cv_.notify_all();
    if (spool_) spool_->Wake();
    CloseAllStreams();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    for (auto& t : threads_) t.join();
    threads_.clear();
    if (server_) server_->Wait();
    spool_.reset();
    LogInfo("mp.stopped");
    std::call_once(done_once_, [this] { done_.Notify(); });
    shutdown_.Done();
  }

  const std::string& bound_address() const { return bound_address_; }

  // --- ManagementPoint ----------------------------------------------------

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) override {
    auto* reactor = context->DefaultReactor();
    // Registration is the one call an agent makes before it has a
    // certificate; the site decides (token / approval) and signs.
    struct Call {
      grpc::ClientContext ctx;
    };
    auto* call = new Call;
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stub_->async()->Register(
        &call->ctx, request, response, [this, call, reactor, response](grpc::Status s) {
          delete call;
          // Not allowed here yet: its first call looks it up, custom client
          // settings included.
          if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
            s = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                             "the site server cannot be reached: " + s.error_message());
          }
          reactor->Finish(s);
        });
    return reactor;
  }

  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* context,
                                   const v1::LocateRequest* request,
                                   v1::ServiceLocation* response) override {
    return WithClient(context, [this, context, request, response](grpc::ServerUnaryReactor* r,
                                                                  const std::string&) {
      std::vector<std::string> ips;
      for (const auto& ip : request->ip_addresses()) {
        if (ips.size() < 256) ips.push_back(ip);
      }
      std::string peer = context->peer();  // "ipv4:10.1.2.3:5555" / "ipv6:[::1]:5555"
      if (absl::StartsWith(peer, "ipv4:")) {
        ips.push_back(peer.substr(5, peer.rfind(':') - 5));
      } else if (absl::StartsWith(peer, "ipv6:[")) {
        ips.push_back(peer.substr(6, peer.find(']') - 6));
      }
      auto bundle = CurrentBundle();
      if (!bundle) {
        r->Finish(NoBundle());
        return;
      }
      *response = mp::Locate(*bundle, ips, public_address_);
      r->Finish(grpc::Status::OK);
    });
  }

  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* context,
                                      const v1::PolicyRequest* request,
                                      v1::PolicyResponse* response) override {
    return WithClient(
        context, [this, request, response](grpc::ServerUnaryReactor* r, const std::string& id) {
          auto bundle = CurrentBundle();
          if (!bundle) {
            r->Finish(NoBundle());
            return;
          }
          bool full = TakeFullRequest(id);
          if (!IsAllowed(id) && !request->current_version().empty()) {
            // Accepted while the site is away (see LookupLoop): which custom
            // settings reach it is unknown here, so it keeps what it has.
            response->set_not_modified(true);
            response->set_version(request->current_version());
            response->set_full_inventory_requested(full);
            r->Finish(grpc::Status::OK);
            return;
          }
          v1::ClientSettings settings = policy::EffectiveSettings(*bundle, AssignedTo(id));
          const std::string version = policy::PolicyVersion(settings);
          response->set_version(version);
          if (!full && request->current_version() == version) {
            response->set_not_modified(true);
          } else {
            *response->mutable_settings() = std::move(settings);
            response->set_full_inventory_requested(full);
          }
          r->Finish(grpc::Status::OK);
        });
  }

  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context,
                                   const v1::ReportRequest* request,
                                   v1::ReportResponse* response) override {
    return WithClient(
        context, [this, request, response](grpc::ServerUnaryReactor* r, const std::string& id) {
          absl::Status s = CheckReports(*request, id);
          if (!s.ok()) {
            LogWarning("mp.report_refused", {{"client", id}, {"error", s}});
            r->Finish(ToGrpcStatus(s));
            return;
          }
          std::vector<std::string> records;
          records.reserve(request->reports_size());
          for (const auto& report : request->reports()) {
            v1::ClientReport copy = report;
            copy.set_client_id(id);
            records.push_back(copy.SerializeAsString());
          }
          int64_t last = request->reports(request->reports_size() - 1).seq();
          spool_->Append(std::move(records), [this, r, response, last](absl::Status s, int64_t) {
            if (s.ok()) {
              response->set_acknowledged_through_seq(last);
            }
            r->Finish(ToGrpcStatus(s));
          });
        });
  }

  grpc::ServerWriteReactor<v1::Notification>* Notify(grpc::CallbackServerContext* context,
                                                     const v1::NotifyRequest*) override;

 private:
  class NotifyStream;
  friend class NotifyStream;

  // Runs `body` once the caller is known to be an allowed agent; otherwise
  // finishes the call with the reason.
  template <typename Body>
  grpc::ServerUnaryReactor* WithClient(grpc::CallbackServerContext* context, Body body) {
    auto* reactor = context->DefaultReactor();
    auto id = AgentId(*context);
    if (!id.ok()) {
      reactor->Finish(ToGrpcStatus(id.status()));
      return reactor;
    }
    CheckClient(*id, [reactor, body, id = *id](absl::Status s) mutable {
      if (!s.ok()) {
        reactor->Finish(ToGrpcStatus(s));
      } else {
        body(reactor, id);
      }
    });
    return reactor;
  }

  static absl::StatusOr<std::string> AgentId(const grpc::ServerContextBase& context) {
    ASSIGN_OR_RETURN(PeerIdentity peer, PeerFromContext(context));
    if (peer.role != "agent" || !inventory::IsUuid(peer.name)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "only registered agents may call this; the certificate is ", peer.ToString()));
    }
    return peer.name;
  }

  absl::Status CheckReports(const v1::ReportRequest& request, const std::string& id) {
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

  static grpc::Status NoBundle() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the management point has no policy from its site server yet");
  }

  std::shared_ptr<const v1::SiteBundle> CurrentBundle() {
    std::lock_guard<std::mutex> lock(mu_);
    return bundle_;
  }

  // --- Client authorization cache ---------------------------------------

  void Allow(const std::string& id) {
    std::lock_guard<std::mutex> lock(dir_mu_);
    allowed_.insert(id);
  }

  void CheckClient(const std::string& id, std::function<void(absl::Status)> then) {
    {
      std::lock_guard<std::mutex> lock(dir_mu_);
      if (allowed_.count(id)) {
        // Fall through to run `then` outside the lock.
      } else {
        waiting_[id].push_back(std::move(then));
        dir_cv_.notify_one();
        return;
      }
    }
    then(absl::OkStatus());
  }

  // Looks up unknown clients in batches, and rechecks known ones
  // periodically (a revoked client is refused within client_recheck_seconds).
  void LookupLoop() {
    auto next_recheck =
        std::chrono::steady_clock::now() + std::chrono::seconds(config_.client_recheck_seconds());
    while (!stopping()) {
      std::map<std::string, std::vector<std::function<void(absl::Status)>>> batch;
      {
        std::unique_lock<std::mutex> lock(dir_mu_);
        dir_cv_.wait_for(lock, std::chrono::milliseconds(200),
                         [&] { return !waiting_.empty() || recheck_requested_; });
        while (!waiting_.empty() && batch.size() < 5000) {
          batch.insert(waiting_.extract(waiting_.begin()));
        }
      }
      if (!batch.empty()) {
        std::vector<std::string> ids;
        for (auto& [id, _] : batch) ids.push_back(id);
        BeginLookup(ids);
        auto allowed = Lookup(ids);
        LogDebug("mp.clients_looked_up", {{"clients", ids.size()},
                                          {"allowed", allowed.ok() ? allowed->size() : 0},
                                          {"error", allowed.status()}});
        EndLookup(allowed.ok() ? &*allowed : nullptr, ids);
        if (allowed.ok()) provisional_logged_ = false;
        for (auto& [id, callbacks] : batch) {
          absl::Status s;
          if (!allowed.ok()) {
            // The site is away: a certificate from the site's CA is enough
            // for now (data is only spooled); the client is looked up again
            // on its next call, and revocation bites once the site is back.
            if (!provisional_logged_) {
              LogWarning("mp.clients_unverified", {{"error", allowed.status()}});
              provisional_logged_ = true;
            }
          } else if (!allowed->count(id)) {
            s = absl::PermissionDeniedError(
                absl::StrCat("client ", id,
                             " is unknown, not approved or revoked at this site; register again"));
          } else {
            Allow(id);
          }
          for (auto& cb : callbacks) cb(s);
        }
      }
      if (std::chrono::steady_clock::now() >= next_recheck || TakeRecheckRequest()) {
        Recheck();
        next_recheck = std::chrono::steady_clock::now() +
                       std::chrono::seconds(config_.client_recheck_seconds());
      }
    }
    // Anyone still waiting gets an answer (outside the lock: a stream's
    // callback takes the stream's own lock, which is taken before dir_mu_).
    std::map<std::string, std::vector<std::function<void(absl::Status)>>> left;
    {
      std::lock_guard<std::mutex> lock(dir_mu_);
      left.swap(waiting_);
    }
    for (auto& [id, callbacks] : left) {
      for (auto& cb : callbacks) cb(absl::UnavailableError("management point stopping"));
    }
  }

  // The allowed clients among `ids`, each with its custom settings.
  absl::StatusOr<std::map<std::string, std::vector<std::string>>> Lookup(
      const std::vector<std::string>& ids) {
    std::map<std::string, std::vector<std::string>> out;
    for (size_t i = 0; i < ids.size(); i += 5000) {
      v1::ClientLookupRequest req;
      for (size_t j = i; j < std::min(ids.size(), i + 5000); ++j) req.add_client_ids(ids[j]);
      v1::ClientLookupResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      RETURN_IF_ERROR(FromGrpcStatus(stub_->LookupClients(&ctx, req, &resp)));
      for (const auto& id : resp.allowed()) out[id];
      for (const auto& a : resp.assignments()) {
        auto it = out.find(a.client_id());
        if (it != out.end()) it->second.assign(a.settings().begin(), a.settings().end());
      }
    }
    return out;
  }

  void Recheck() {
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(dir_mu_);
      ids.assign(allowed_.begin(), allowed_.end());
    }
    BeginLookup({});  // `ids` are all allowed already
    auto allowed = Lookup(ids);
    EndLookup(allowed.ok() ? &*allowed : nullptr, ids);
    if (!allowed.ok()) return;  // keep the cache while the site is away
    std::vector<std::string> dropped;
    {
      std::lock_guard<std::mutex> lock(dir_mu_);
      for (const auto& id : ids) {
        if (!allowed->count(id)) {
          allowed_.erase(id);
          dropped.push_back(id);
        }
      }
    }
    for (const auto& id : dropped) {
      LogInfo("mp.client_revoked", {{"client", id}});
      CloseStream(id, grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                   "this client's registration was revoked"));
    }
  }

  // --- Custom client settings ------------------------------------------

  std::vector<std::string> AssignedTo(const std::string& id) {
    std::lock_guard<std::mutex> lock(dir_mu_);
    auto it = assignments_.find(id);
    return it == assignments_.end() ? std::vector<std::string>() : it->second;
  }

  // The policy version client `id` is served now ("" while it is not
  // confirmed by the site: see GetPolicy).
  std::string PolicyVersionOf(const std::string& id) {
    auto bundle = CurrentBundle();
    if (!bundle || !IsAllowed(id)) return std::string();
    return policy::PolicyVersion(policy::EffectiveSettings(*bundle, AssignedTo(id)));
  }

  bool IsAllowed(const std::string& id) {
    std::lock_guard<std::mutex> lock(dir_mu_);
    return allowed_.count(id) > 0;
  }

  // A lookup of `ids` (besides the clients already allowed) is under way.
  // Its answer is older than any change the site pushes meanwhile: the
  // pushes are kept, the answer's word on those clients is not (EndLookup).
  // Lookups run one at a time (LookupLoop).
  void BeginLookup(const std::vector<std::string>& ids) {
    std::lock_guard<std::mutex> lock(dir_mu_);
    lookup_under_way_ = true;
    looking_up_.insert(ids.begin(), ids.end());
  }

  // Applies a lookup's answer (null: the site did not answer) for `ids`:
  // absent from `answer` means refused, so nothing to keep.
  void EndLookup(const std::map<std::string, std::vector<std::string>>* answer,
                 const std::vector<std::string>& ids) {
    std::unordered_set<std::string> pushed;
    {
      std::lock_guard<std::mutex> lock(dir_mu_);
      pushed.swap(pushed_during_lookup_);
      looking_up_.clear();
      lookup_under_way_ = false;
    }
    if (answer == nullptr) return;
    std::vector<Assignment> changes;
    for (const auto& id : ids) {
      auto it = answer->find(id);
      if (it == answer->end()) {
        changes.emplace_back(id, std::vector<std::string>());
      } else if (!pushed.count(id)) {
        changes.emplace_back(id, it->second);
      }
    }
    UpdateAssignments(changes, /*pushed=*/false);
  }

  // Applies changed assignments; a client whose effective settings change is
  // told at once (POLICY_CHANGED), no other. Pushed by the site (`pushed`):
  // kept for clients this MP serves or is looking up; the others get theirs
  // when they are first looked up.
  void UpdateAssignments(const std::vector<Assignment>& changes, bool pushed) {
    std::vector<std::string> notify;
    {
      // One at a time with SetBundle: each compares versions under the
      // bundle the other leaves, so no change of either goes untold.
      std::lock_guard<std::mutex> policy_lock(policy_mu_);
      auto bundle = CurrentBundle();
      std::lock_guard<std::mutex> lock(dir_mu_);
      for (const auto& [id, names] : changes) {
        if (pushed) {
          if (!allowed_.count(id) && !looking_up_.count(id)) continue;
          if (lookup_under_way_) pushed_during_lookup_.insert(id);
        }
        auto it = assignments_.find(id);
        const std::vector<std::string> none;
        const std::vector<std::string>& before = it == assignments_.end() ? none : it->second;
        if (before == names) continue;
        if (bundle && policy::PolicyVersion(policy::EffectiveSettings(*bundle, before)) !=
                          policy::PolicyVersion(policy::EffectiveSettings(*bundle, names))) {
          notify.push_back(id);
        }
        if (names.empty()) {
          assignments_.erase(id);
        } else {
          assignments_[id] = names;
        }
      }
    }
    for (const auto& id : notify) Push(id, v1::NOTIFICATION_KIND_POLICY_CHANGED);
    if (!notify.empty()) LogInfo("mp.client_settings_changed", {{"clients", notify.size()}});
  }

  void RequestRecheck() {
    {
      std::lock_guard<std::mutex> lock(dir_mu_);
      recheck_requested_ = true;
    }
    dir_cv_.notify_one();
  }

  bool TakeRecheckRequest() {
    std::lock_guard<std::mutex> lock(dir_mu_);
    return std::exchange(recheck_requested_, false);
  }

  // --- Notifications -----------------------------------------------------

  void Push(const std::string& id, v1::NotificationKind kind);
  void CloseStream(const std::string& id, const grpc::Status& status);
  void CloseAllStreams();
  void ReleaseStreamSlot() {
    std::lock_guard<std::mutex> lock(streams_mu_);
    --admitted_streams_;
  }
  void Unregister(const std::string& id, NotifyStream* stream) {
    std::lock_guard<std::mutex> lock(streams_mu_);
    auto it = streams_.find(id);
    if (it != streams_.end() && it->second == stream) streams_.erase(it);
  }
  bool HasFullRequest(const std::string& id) {
    std::lock_guard<std::mutex> lock(dir_mu_);
    return full_requests_.count(id) > 0;
  }
  bool TakeFullRequest(const std::string& id) {
    std::lock_guard<std::mutex> lock(dir_mu_);
    return full_requests_.erase(id) > 0;
  }

  // --- Listener watch ----------------------------------------------------

  // gRPC 1.51 stops accepting connections for good after one accept() fails
  // (EMFILE: "Failed accept4: Too many open files"; see GrpcLog). Then the
  // MP stops with an error (exit code 1) for its supervisor to restart it:
  // the spool keeps every acknowledged report, agents reconnect.
  void ListenerWatch() {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; })) return;
      }
      if (!g_accept_failed) continue;
      LogError("mp.listener_dead",
               {{"address", bound_address_},
                {"action", "stopping; the supervisor restarts the MP, the spool is kept"}});
      {
        std::lock_guard<std::mutex> lock(mu_);
        fatal_ = absl::UnavailableError(
            absl::StrCat("the agent listener on ", bound_address_,
                         " stopped accepting connections (accept failed: out of open files?)"));
      }
      std::call_once(done_once_, [this] { done_.Notify(); });  // Wait() returns; main stops
      return;
    }
  }

  // --- The link to the site server --------------------------------------

  bool stopping() {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  void LoadSavedBundle() {
    std::ifstream in(config_.spool_dir() + "/bundle.pb", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto b = std::make_shared<v1::SiteBundle>();
    if (!bytes.empty() && b->ParseFromString(bytes) && !b->version().empty()) {
      bundle_ = b;  // serve policy while the site server is away
    }
  }

  void SetBundle(const v1::SiteBundle& b) {
    std::unique_lock<std::mutex> policy_lock(policy_mu_);  // see UpdateAssignments
    bool changed;
    std::shared_ptr<const v1::SiteBundle> before;
    {
      std::lock_guard<std::mutex> lock(mu_);
      changed = !bundle_ || bundle_->version() != b.version();
      before = bundle_;
      if (changed) bundle_ = std::make_shared<v1::SiteBundle>(b);
    }
    if (!changed) return;
    std::string tmp = config_.spool_dir() + "/bundle.pb.tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      b.SerializeToOstream(&out);
    }
    std::rename(tmp.c_str(), (config_.spool_dir() + "/bundle.pb").c_str());
    // Only clients whose own settings changed are told (a boundary or a
    // site system changes the bundle, not their policy).
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(streams_mu_);
      ids.reserve(streams_.size());
      for (const auto& [id, _] : streams_) ids.push_back(id);
    }
    std::vector<std::string> notify;
    for (const auto& id : ids) {
      const auto assigned = AssignedTo(id);
      if (before && policy::PolicyVersion(policy::EffectiveSettings(*before, assigned)) ==
                        policy::PolicyVersion(policy::EffectiveSettings(b, assigned))) {
        continue;
      }
      notify.push_back(id);
    }
    policy_lock.unlock();
    for (const auto& id : notify) Push(id, v1::NOTIFICATION_KIND_POLICY_CHANGED);
    const size_t told = notify.size();
    LogInfo("mp.bundle_changed",
            {{"version", b.version()}, {"streams", ids.size()}, {"told", told}});
  }

  void SiteLoop() {
    int backoff_ms = 100;
    while (!stopping()) {
      auto started = std::chrono::steady_clock::now();
      absl::Status s = RunSiteStream();
      if (stopping()) break;
      LogWarning("mp.site_link_down", {{"site", config_.site_address()},
                                       {"error", s},
                                       {"spooled", spool_->last_seq() - spool_->acknowledged()}});
      if (std::chrono::steady_clock::now() - started > std::chrono::seconds(10)) backoff_ms = 100;
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; });
      backoff_ms = std::min(backoff_ms * 2, 5000);
    }
  }

  absl::Status RunSiteStream() {
    grpc::ClientContext ctx;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return absl::OkStatus();
      site_ctx_ = &ctx;
    }
    auto stream = stub_->Connect(&ctx);
    v1::MpUp hello;
    hello.mutable_hello()->set_name(config_.name());
    hello.mutable_hello()->set_address(public_address_);
    hello.mutable_hello()->set_version(kVersion);
    std::mutex in_flight_mu;
    std::condition_variable in_flight_cv;
    int in_flight = 0;
    bool down = !stream->Write(hello);
    std::thread reader([&] {
      bool bundle_seen = false;
      v1::MpDown m;
      while (stream->Read(&m)) {
        if (m.has_bundle()) {
          SetBundle(m.bundle());
          // The site registered this stream before sending its bundle: from
          // here on no change of a client's settings passes it by. Whatever
          // changed while there was none is looked up again.
          if (!bundle_seen) RequestRecheck();
          bundle_seen = true;
        } else if (m.has_assignments()) {
          std::vector<Assignment> changes;
          for (const auto& a : m.assignments().clients()) {
            changes.emplace_back(
                a.client_id(), std::vector<std::string>(a.settings().begin(), a.settings().end()));
          }
          UpdateAssignments(changes, /*pushed=*/true);
        } else if (m.has_request()) {
          {
            std::lock_guard<std::mutex> lock(dir_mu_);
            full_requests_.insert(m.request().client_id());
          }
          Push(m.request().client_id(), m.request().kind());
        } else if (m.body_case() == v1::MpDown::kAckedSpoolSeq) {
          LogDebug("mp.batch_acked", {{"through", m.acked_spool_seq()}});
          absl::Status s = spool_->Acknowledge(m.acked_spool_seq());
          if (!s.ok()) LogWarning("mp.spool_ack_failed", {{"error", s}});
          std::lock_guard<std::mutex> lock(in_flight_mu);
          --in_flight;
          in_flight_cv.notify_all();
        } else if (m.has_error()) {
          LogWarning("mp.site_refused_batch", {{"error", m.error()}});
        }
      }
      std::lock_guard<std::mutex> lock(in_flight_mu);
      down = true;
      in_flight_cv.notify_all();
      spool_->Wake();
    });
    if (!down) LogInfo("mp.site_link_up", {{"site", config_.site_address()}});
    int64_t sent = spool_->acknowledged();
    absl::Status result;
    while (!stopping()) {
      {
        std::unique_lock<std::mutex> lock(in_flight_mu);
        in_flight_cv.wait_for(lock, std::chrono::milliseconds(200),
                              [&] { return down || in_flight < kMaxInFlightBatches; });
        if (down) break;
        if (in_flight >= kMaxInFlightBatches) continue;
      }
      auto records = spool_->Read(sent, config_.batch_max_reports(), kBatchBytes, 200);
      if (!records.ok()) {
        result = records.status();
        break;
      }
      if (records->empty()) continue;
      v1::MpUp up;
      auto* batch = up.mutable_batch();
      for (const auto& rec : *records) {
        if (!batch->add_reports()->ParseFromString(rec.data)) {
          // Cannot happen for records this MP wrote (checksummed); dropped.
          batch->mutable_reports()->RemoveLast();
          LogError("mp.spool_record_unreadable", {{"seq", rec.seq}});
        }
      }
      batch->set_spool_seq(records->back().seq);
      {
        std::lock_guard<std::mutex> lock(in_flight_mu);
        ++in_flight;
      }
      if (!stream->Write(up)) break;
      sent = records->back().seq;
      LogDebug("mp.batch_sent", {{"reports", batch->reports_size()}, {"through", sent}});
    }
    ctx.TryCancel();
    reader.join();
    grpc::Status finish = stream->Finish();
    {
      std::lock_guard<std::mutex> lock(mu_);
      site_ctx_ = nullptr;
    }
    if (result.ok()) result = FromGrpcStatus(finish);
    return result;
  }

  v1::MpConfig config_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<v1::SiteClients::Stub> stub_;
  std::unique_ptr<grpc::Server> server_;
  std::string bound_address_;
  std::string public_address_;
  std::vector<std::thread> threads_;
  absl::Notification done_;
  std::once_flag done_once_;
  absl::Status fatal_;  // guarded by mu_; what Wait() returns
  ShutdownGuard shutdown_;
  bool provisional_logged_ = false;  // LookupLoop only

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                         // guarded by mu_
  grpc::ClientContext* site_ctx_ = nullptr;       // guarded by mu_
  std::shared_ptr<const v1::SiteBundle> bundle_;  // guarded by mu_

  std::mutex dir_mu_;
  std::condition_variable dir_cv_;
  std::unordered_set<std::string> allowed_;  // guarded by dir_mu_
  std::map<std::string, std::vector<std::function<void(absl::Status)>>>
      waiting_;                                    // guarded by dir_mu_
  std::unordered_set<std::string> full_requests_;  // guarded by dir_mu_
  // Clients with custom settings: their names, sorted (the others: none).
  std::unordered_map<std::string, std::vector<std::string>> assignments_;  // guarded by dir_mu_
  bool lookup_under_way_ = false;                                          // guarded by dir_mu_
  std::unordered_set<std::string> looking_up_;                             // guarded by dir_mu_
  std::unordered_set<std::string> pushed_during_lookup_;                   // guarded by dir_mu_
  // Orders SetBundle and UpdateAssignments; taken before mu_ and dir_mu_.
  std::mutex policy_mu_;
  bool recheck_requested_ = false;  // guarded by dir_mu_

  std::mutex streams_mu_;
  std::unordered_map<std::string, NotifyStream*> streams_;  // guarded by streams_mu_
  int64_t max_streams_ = 0;                                 // set by Start()
  int64_t admitted_streams_ = 0;                            // guarded by streams_mu_
};

// One agent's notification stream. Writes are queued (one in flight at a
// time, duplicates of a queued kind dropped); the stream deletes itself when
// gRPC is done with it.
class MpServer::Impl::NotifyStream final : public grpc::ServerWriteReactor<v1::Notification> {
 public:
  NotifyStream(Impl* mp, std::string id) : mp_(mp), id_(std::move(id)) {}

  void Push(v1::NotificationKind kind) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    for (auto k : queue_) {
      if (k == kind) return;
    }
    if (queue_.size() >= kMaxQueuedNotifications) return;
    queue_.push_back(kind);
    if (!writing_) WriteNextLocked();
  }

  void Close(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      if (!finished_) {
        finished_ = true;
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      }
      return;
    }
    if (!queue_.empty() && !finished_) WriteNextLocked();
  }

  // Until the client is authorized, a cancellation only records itself: the
  // authorization callback still holds this stream and finishes it then.
  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (checking_) {
        cancelled_ = true;
        return;
      }
    }
    Close(grpc::Status::CANCELLED);
  }

  // Called once by the authorization callback; false if the stream ended.
  bool Authorized(const absl::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    checking_ = false;
    if (!s.ok() || cancelled_) {
      if (!finished_) {
        finished_ = true;
        Finish(cancelled_ ? grpc::Status::CANCELLED : ToGrpcStatus(s));
      }
      return false;
    }
    return true;
  }

  void OnDone() override {
    mp_->Unregister(id_, this);
    mp_->ReleaseStreamSlot();
    delete this;
  }

 private:
  void WriteNextLocked() {
    current_.set_kind(queue_.front());
    queue_.pop_front();
    // CONNECTED and POLICY_CHANGED carry the policy version the MP serves.
    current_.clear_detail();
    if (current_.kind() == v1::NOTIFICATION_KIND_CONNECTED ||
        current_.kind() == v1::NOTIFICATION_KIND_POLICY_CHANGED) {
      current_.set_detail(mp_->PolicyVersionOf(id_));
    }
    writing_ = true;
    StartWrite(&current_);
  }

  Impl* const mp_;
  const std::string id_;
  std::mutex mu_;
  std::deque<v1::NotificationKind> queue_;
  v1::Notification current_;
  bool writing_ = false;
  bool finished_ = false;
  bool checking_ = true;
  bool cancelled_ = false;
};

grpc::ServerWriteReactor<v1::Notification>* MpServer::Impl::Notify(
    grpc::CallbackServerContext* context, const v1::NotifyRequest*) {
  struct Refused final : grpc::ServerWriteReactor<v1::Notification> {
    explicit Refused(const grpc::Status& s) { Finish(s); }
    void OnDone() override { delete this; }
  };
  auto id = AgentId(*context);
  if (!id.ok()) return new Refused(ToGrpcStatus(id.status()));
  {
    // Each stream is a connection, hence an open file: beyond the limit the
    // agent is told to come back later (it polls meanwhile). Counted from
    // admission (not authorization, which may take seconds) to its end.
    std::lock_guard<std::mutex> lock(streams_mu_);
    if (admitted_streams_ >= max_streams_) {
      return new Refused(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("this management point holds ", admitted_streams_,
                       " notification streams, all its open-file limit allows; retry later")));
    }
    ++admitted_streams_;
  }
  auto* stream = new NotifyStream(this, *id);
  CheckClient(*id, [this, stream, id = *id](absl::Status s) {
    // Registered before Authorized(): until then the stream cannot finish
    // (see OnCancel), and once registered its OnDone unregisters it.
    if (s.ok()) {
      std::lock_guard<std::mutex> lock(streams_mu_);
      NotifyStream*& slot = streams_[id];
      if (slot) slot->Close(grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer stream"));
      slot = stream;
    }
    if (!stream->Authorized(s)) {
      if (s.ok()) Unregister(id, stream);
      return;
    }
    Push(id, v1::NOTIFICATION_KIND_CONNECTED);
    if (HasFullRequest(id)) Push(id, v1::NOTIFICATION_KIND_FULL_INVENTORY);
  });
  return stream;
}

void MpServer::Impl::Push(const std::string& id, v1::NotificationKind kind) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->Push(kind);
}

void MpServer::Impl::CloseStream(const std::string& id, const grpc::Status& status) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->Close(status);
}

void MpServer::Impl::CloseAllStreams() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  for (auto& [id, s] : streams_) {
    s->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "management point stopping"));
  }
}

MpServer::MpServer(v1::MpConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
MpServer::~MpServer() = default;
absl::Status MpServer::Start() { return impl_->Start(); }
absl::Status MpServer::Wait() { return impl_->Wait(); }
void MpServer::Shutdown() { impl_->Shutdown(); }
const std::string& MpServer::bound_address() const { return impl_->bound_address(); }

}  // namespace strata::mp
