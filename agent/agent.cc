#include "agent/agent.h"

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "agent/agent_config.h"
#include "agent/collectors.h"
#include "agent/install_engine.h"
#include "agent/inventory_delta.h"
#include "agent/live_query_engine.h"
#include "agent/nudge_loop.h"
#include "agent/outbound_queue.h"
#include "agent/runbook_worker.h"
#include "agent/script_engine.h"
#include "common/base/backoff.h"
#include "common/base/files.h"
#include "common/base/hlc.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/net/pki.h"
#include "common/net/tls.h"
#include "grpcpp/grpcpp.h"
#include "strata/v1/client.grpc.pb.h"

namespace strata::agent {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxReportsPerRequest = 200;
constexpr int64_t kMaxRequestBytes = 4 << 20;
// Reports that ride the nudge channel: a few small ones, within its frame.
constexpr int kMaxChannelReports = 16;
constexpr int64_t kMaxChannelReportBytes = 3500;

}  // namespace

class Agent::Impl {
 public:
  explicit Impl(v1::AgentConfig config)
      : config_(AgentConfigWithDefaults(std::move(config))),
        dir_(config_.state_dir()),
        queue_(dir_, config_.max_queue_reports()),
        nudge_(NudgeHooks()) {}

  ~Impl() { Stop(); }

  absl::Status Init() {
    if (engine_) return absl::OkStatus();  // once
    RETURN_IF_ERROR(ValidateAgentConfig(config_));
    RETURN_IF_ERROR(queue_.Open());
    // Others may pass through (not list) to a job's folder when an install
    // runs as a named user; the key and everything else are 0600.
    chmod(dir_.c_str(), 0711);
    policy_.ParseFromString(ReadFileOrEmpty(dir_ + "/policy.pb"));
    SetKnownVersion(policy_.version());
    engine_ = std::make_unique<InstallEngine>(EngineOptionsFor());
    scripts_ = std::make_unique<ScriptEngine>(ScriptEngineOptions{dir_, QueueReport()});
    live_ = std::make_unique<LiveQueryEngine>(
        LiveQueryEngineOptions{dir_, CollectorContextFor(),
                               [this] { return ReadFileOrEmpty(dir_ + "/site"); }, QueueReport()});
    runbooks_ = std::make_unique<RunbookWorker>(RunbookWorkerOptions{
        dir_, [this](const v1::RunbookWorkRequest& req) { return RunbookExchange(req); }});
    GivePolicyToEngines();
    LoadSchedule();
    // "address[ nudge_address]" per line, best first.
    for (absl::string_view line :
         absl::StrSplit(ReadFileOrEmpty(dir_ + "/mps"), '\n', absl::SkipEmpty())) {
      std::pair<std::string, std::string> mp = absl::StrSplit(line, absl::MaxSplits(' ', 1));
      AddMp(mp.first);
      if (!mp.second.empty()) {
        absl::MutexLock lock(&mu_);
        nudge_addresses_[mp.first] = mp.second;
      }
    }
    for (const auto& mp : config_.management_points()) AddMp(mp);
    return absl::OkStatus();
  }

  absl::StatusOr<v1::ContentLocation> GetContent(const std::string& package, int64_t version) {
    RETURN_IF_ERROR(Init());
    return LocateContent(package, version);
  }

  absl::StatusOr<v1::ContentLocation> LocateContent(const std::string& package, int64_t version) {
    if (!HasIdentity())
      return absl::FailedPreconditionError(
          "this agent is not registered yet: run it (strata-agent --once) first");
    v1::ContentRequest req;
    req.set_package(package);
    req.set_version(version);
    for (const auto& ip : LocalAddresses()) req.add_ip_addresses(ip);
    v1::ContentLocation out;
    RETURN_IF_ERROR(OnSomeMp([&](v1::ManagementPoint::Stub& stub, const std::string&) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      out.Clear();
      return FromGrpcStatus(stub.GetContent(&ctx, req, &out));
    }));
    return out;
  }

  absl::Status RunOnce() {
    RETURN_IF_ERROR(Init());
    RETURN_IF_ERROR(Cycle(/*all_due=*/true));
    engine_->RunPass();
    scripts_->RunPass();
    live_->RunPass();
    return SendQueue();
  }

  absl::Status Run() {
    RETURN_IF_ERROR(Init());
    std::thread nudge([this] { nudge_.Run(); });
    engine_->Start();
    scripts_->Start();
    live_->Start();
    runbooks_->Start();
    Backoff retry(std::chrono::seconds(5), std::chrono::seconds(300));
    bool started = false;
    while (!stopping()) {
      absl::Status s = Cycle(false);
      if (s.ok() && !started) {
        s = queue_.Enqueue(
            StateReport("agent.started", 0, absl::StrCat("strata-agent ", kVersion)));
        started = s.ok();
      }
      if (s.ok()) s = SendQueue();
      absl::Duration wait;
      if (!s.ok()) {
        const auto next = retry.Next();
        LogWarning("agent.cycle_failed",
                   {{"error", s},
                    {"retry_s", std::chrono::duration_cast<std::chrono::seconds>(next).count()}});
        wait = absl::FromChrono(next);
      } else {
        retry.Reset();
        wait =
            absl::Milliseconds(std::clamp<int64_t>(NextDueMs() - WallClockMs(), 100, 3600 * 1000));
      }
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || wake_; };
      mu_.AwaitWithTimeout(absl::Condition(&woken), wait);
      wake_ = false;
      // A nudge to many clients says how far to spread their fetches: wait
      // a random part of it (unless told to stop).
      const absl::Time not_before = fetch_not_before_;
      fetch_not_before_ = absl::InfinitePast();
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (not_before > absl::Now()) {
        mu_.AwaitWithTimeout(absl::Condition(&stop), not_before - absl::Now());
      }
    }
    nudge_.Stop();
    nudge.join();
    engine_->Stop();
    scripts_->Stop();
    live_->Stop();
    runbooks_->Stop();
    return absl::OkStatus();
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    nudge_.Stop();
  }

 private:
  bool stopping() {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  void AddMp(const std::string& mp) {
    std::string a(absl::StripAsciiWhitespace(mp));
    if (a.empty()) return;
    absl::MutexLock lock(&mu_);
    if (std::find(mps_.begin(), mps_.end(), a) == mps_.end()) mps_.push_back(a);
  }

  // --- schedules ---------------------------------------------------------

  void LoadSchedule() {
    for (absl::string_view line :
         absl::StrSplit(ReadFileOrEmpty(dir_ + "/schedule"), '\n', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
      int64_t v = 0;
      if (absl::SimpleAtoi(kv.second, &v)) last_run_[kv.first] = v;
    }
  }

  void SaveSchedule() {
    std::string out;
    for (const auto& [k, v] : last_run_) absl::StrAppend(&out, k, "=", v, "\n");
    (void)WriteFileDurably(dir_ + "/schedule", out);
  }

  int64_t IntervalMs(const std::string& name) {
    const auto& st = policy_.settings();
    int64_t s = name == "policy"      ? st.policy_poll_seconds()
                : name == "inventory" ? st.inventory_seconds()
                                      : st.heartbeat_seconds();
    if (s <= 0) s = name == "policy" ? 3600 : 7 * 86400;
    // Without the nudge channel, policy changes are only seen by polling.
    if (name == "policy" && !nudge_.held())
      s = std::min<int64_t>(s, config_.fallback_poll_seconds());
    return s * 1000;
  }

  // Due at last run + interval + a random splay fixed per schedule and run.
  int64_t DueMs(const std::string& name) {
    auto it = last_run_.find(name);
    if (it == last_run_.end()) return 0;
    int64_t splay_ms = std::max<int64_t>(policy_.settings().splay_seconds(), 0) * 1000;
    splay_ms = std::min(splay_ms, IntervalMs(name) / 4);
    int64_t splay =
        splay_ms > 0
            ? static_cast<int64_t>(std::hash<std::string>{}(absl::StrCat(name, it->second))) %
                  splay_ms
            : 0;
    return it->second + IntervalMs(name) + splay;
  }

  int64_t NextDueMs() {
    return std::min({DueMs("policy"), DueMs("inventory"), DueMs("heartbeat")});
  }

  // --- one cycle ---------------------------------------------------------

  absl::Status Cycle(bool all_due) {
    RETURN_IF_ERROR(EnsureRegistered());
    const int64_t now = WallClockMs();
    bool policy_due = all_due || now >= DueMs("policy") || TakeFlag(&policy_now_);
    bool inventory_due = all_due || now >= DueMs("inventory") || TakeFlag(&inventory_now_);
    bool heartbeat_due = all_due || now >= DueMs("heartbeat");
    bool full = TakeFlag(&full_now_);
    std::optional<v1::PolicyResponse> pushed;
    {
      absl::MutexLock lock(&mu_);
      pushed.swap(pushed_policy_);
    }
    if (pushed && pushed->version() != policy_.version()) {
      RETURN_IF_ERROR(ApplyPolicy(*pushed, "nudge"));
    }
    if (policy_due) {
      auto policy = FetchPolicy();
      if (!policy.ok()) return policy.status();
      full = full || *policy;
      last_run_["policy"] = now;
    }
    if (inventory_due || full) {
      RETURN_IF_ERROR(QueueInventory(full));
      last_run_["inventory"] = now;
    }
    if (heartbeat_due) {
      v1::ClientReport hb;
      hb.mutable_heartbeat()->set_hostname(config_.hostname());
      for (const auto& ip : LocalAddresses()) hb.mutable_heartbeat()->add_ip_addresses(ip);
      RETURN_IF_ERROR(queue_.Enqueue(hb));
      last_run_["heartbeat"] = now;
    }
    SaveSchedule();
    return absl::OkStatus();
  }

  bool TakeFlag(bool* flag) {
    absl::MutexLock lock(&mu_);
    return std::exchange(*flag, false);
  }

  // --- registration ------------------------------------------------------

  bool HasIdentity() {
    return fs::exists(dir_ + "/client.pem") && fs::exists(dir_ + "/client.key");
  }

  absl::Status EnsureRegistered() {
    if (HasIdentity()) return absl::OkStatus();
    std::string key = ReadFileOrEmpty(dir_ + "/pending.key");
    std::string csr = ReadFileOrEmpty(dir_ + "/pending.csr");
    if (key.empty() || csr.empty()) {
      ASSIGN_OR_RETURN(KeyAndCsr made, MakeKeyAndCsr(config_.hostname()));
      RETURN_IF_ERROR(WriteFileDurably(dir_ + "/pending.key", made.key_pem));
      RETURN_IF_ERROR(WriteFileDurably(dir_ + "/pending.csr", made.csr_pem));
      key = made.key_pem;
      csr = made.csr_pem;
    }
    v1::RegisterRequest req;
    req.set_csr_pem(csr);
    req.set_hardware_id(config_.hardware_id());
    req.set_hostname(config_.hostname());
    req.set_enrollment_token(config_.enrollment_token());
    absl::Status last = absl::UnavailableError("no management point");
    for (const auto& mp : Mps()) {
      v1::TlsConfig tls;
      tls.set_ca_file(config_.ca_file());  // no client certificate yet
      auto channel = MakeChannel(mp, tls);
      if (!channel.ok()) return channel.status();
      auto stub = v1::ManagementPoint::NewStub(*channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::RegisterResponse resp;
      last = FromGrpcStatus(stub->Register(&ctx, req, &resp));
      if (!last.ok()) {
        if (last.code() == absl::StatusCode::kUnavailable) continue;  // next MP
        return Annotate(last, "registration refused");
      }
      RETURN_IF_ERROR(WriteFileDurably(dir_ + "/client_id", resp.client_id() + "\n", 0644));
      if (resp.state() == v1::REGISTRATION_STATE_PENDING) {
        LogInfo("agent.pending_approval", {{"client", resp.client_id()}, {"mp", mp}});
        return absl::UnavailableError(absl::StrCat("registered as ", resp.client_id(),
                                                   "; waiting for an administrator's approval"));
      }
      RETURN_IF_ERROR(WriteFileDurably(dir_ + "/client.key", key));
      RETURN_IF_ERROR(WriteFileDurably(dir_ + "/client.pem", resp.certificate_pem(), 0644));
      RETURN_IF_ERROR(WriteFileDurably(dir_ + "/site", resp.site_code(), 0644));
      fs::remove(dir_ + "/pending.key");
      fs::remove(dir_ + "/pending.csr");
      LogInfo("agent.registered",
              {{"client", resp.client_id()}, {"site", resp.site_code()}, {"mp", mp}});
      return absl::OkStatus();
    }
    return last;
  }

  std::vector<std::string> Mps() {
    absl::MutexLock lock(&mu_);
    return mps_;
  }

  // A stub to `mp` with this client's certificate, on a channel of its own
  // that lives as long as the stub (one exchange: locate and policy, or the
  // queue): an idle agent holds no gRPC connection, only its nudge channel.
  absl::StatusOr<std::unique_ptr<v1::ManagementPoint::Stub>> Stub(const std::string& mp) {
    v1::TlsConfig tls;
    tls.set_ca_file(config_.ca_file());
    tls.set_cert_file(dir_ + "/client.pem");
    tls.set_key_file(dir_ + "/client.key");
    ChannelOptions options;
    options.max_message_bytes = 16 << 20;
    options.keepalive_ms = 60000;
    options.idle_timeout_ms = 10000;
    ASSIGN_OR_RETURN(auto channel, MakeChannel(mp, tls, options));
    return v1::ManagementPoint::NewStub(channel);
  }

  // Calls `fn` on each MP in turn until one is reachable (failover).
  template <typename Fn>
  absl::Status OnSomeMp(Fn fn) {
    absl::Status last = absl::UnavailableError("no management point configured");
    for (const auto& mp : Mps()) {
      auto stub = Stub(mp);
      if (!stub.ok()) return stub.status();
      last = fn(**stub, mp);
      if (last.code() != absl::StatusCode::kUnavailable &&
          last.code() != absl::StatusCode::kDeadlineExceeded) {
        return last;
      }
      LogWarning("agent.mp_unreachable", {{"mp", mp}, {"error", last}});
    }
    return last;
  }

  // Service location through `mp`: the MPs to use, best first, and the
  // nudge address of `mp` (saved for the next start).
  absl::Status Locate(v1::ManagementPoint::Stub& stub, const std::string& mp) {
    grpc::ClientContext lctx;
    lctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::LocateRequest lreq;
    for (const auto& ip : LocalAddresses()) lreq.add_ip_addresses(ip);
    v1::ServiceLocation loc;
    RETURN_IF_ERROR(FromGrpcStatus(stub.Locate(&lctx, lreq, &loc)));
    std::vector<std::string> mps(loc.management_points().begin(), loc.management_points().end());
    for (const auto& m : Mps()) {
      if (std::find(mps.begin(), mps.end(), m) == mps.end()) mps.push_back(m);
    }
    // Both the agent's thread and the nudge loop's locate: one writer of
    // the file at a time, each writing what is current.
    absl::MutexLock file_lock(&mps_file_mu_);
    std::string saved;
    {
      absl::MutexLock lock(&mu_);
      mps_ = mps;
      if (!loc.nudge_address().empty()) nudge_addresses_[mp] = loc.nudge_address();
      for (const auto& m : mps) {
        auto it = nudge_addresses_.find(m);
        absl::StrAppend(&saved, m, it == nudge_addresses_.end() ? "" : " " + it->second, "\n");
      }
    }
    (void)WriteFileDurably(dir_ + "/mps", saved, 0644);
    return absl::OkStatus();
  }

  // Returns whether the site asked for a full inventory.
  absl::StatusOr<bool> FetchPolicy() {
    bool full = false;
    RETURN_IF_ERROR(OnSomeMp([&](v1::ManagementPoint::Stub& stub, const std::string& mp) {
      RETURN_IF_ERROR(Locate(stub, mp));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::PolicyRequest req;
      req.set_current_version(policy_.version());
      v1::PolicyResponse resp;
      RETURN_IF_ERROR(FromGrpcStatus(stub.GetPolicy(&ctx, req, &resp)));
      full = resp.full_inventory_requested();
      if (!resp.not_modified()) {
        resp.clear_full_inventory_requested();
        RETURN_IF_ERROR(ApplyPolicy(resp, "fetched"));
      }
      return absl::OkStatus();
    }));
    return full;
  }

  // The policy the agent runs by from now on (saved for the next start).
  absl::Status ApplyPolicy(const v1::PolicyResponse& policy, const char* source) {
    policy_ = policy;
    policy_.clear_not_modified();
    SetKnownVersion(policy_.version());
    RETURN_IF_ERROR(WriteFileDurably(dir_ + "/policy.pb", policy_.SerializeAsString()));
    GivePolicyToEngines();
    LogInfo("agent.policy", {{"version", policy_.version()},
                             {"source", source},
                             {"poll_s", policy_.settings().policy_poll_seconds()},
                             {"inventory_s", policy_.settings().inventory_seconds()},
                             {"heartbeat_s", policy_.settings().heartbeat_seconds()}});
    return absl::OkStatus();
  }

  // --- deployments and scripts ------------------------------------------

  void GivePolicyToEngines() {
    engine_->SetDeployments({policy_.deployments().begin(), policy_.deployments().end()},
                            {policy_.windows().begin(), policy_.windows().end()});
    scripts_->SetRuns({policy_.script_runs().begin(), policy_.script_runs().end()});
    live_->SetQueries({policy_.live_queries().begin(), policy_.live_queries().end()});
    runbooks_->SetGroups(
        {policy_.runbook_worker_groups().begin(), policy_.runbook_worker_groups().end()});
  }

  // A runbook worker's exchange with the first MP that answers.
  absl::StatusOr<v1::RunbookWorkResponse> RunbookExchange(const v1::RunbookWorkRequest& req) {
    v1::RunbookWorkResponse out;
    RETURN_IF_ERROR(OnSomeMp([&](v1::ManagementPoint::Stub& stub, const std::string&) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      out.Clear();
      return FromGrpcStatus(stub.RunbookWork(&ctx, req, &out));
    }));
    return out;
  }

  // Queues a report durably and wakes the sender (sent at once).
  std::function<absl::Status(v1::ClientReport)> QueueReport() {
    return [this](v1::ClientReport r) {
      RETURN_IF_ERROR(queue_.Enqueue(std::move(r)));
      absl::MutexLock lock(&mu_);
      wake_ = true;
      return absl::OkStatus();
    };
  }

  EngineOptions EngineOptionsFor() {
    EngineOptions o;
    o.state_dir = dir_;
    o.detect.dpkg_dir = config_.dpkg_dir();
    o.detect.rpm_command = config_.rpm_command();
    o.download.tls.set_ca_file(config_.ca_file());
    o.download.tls.set_cert_file(dir_ + "/client.pem");
    o.download.tls.set_key_file(dir_ + "/client.key");
    o.download.max_bytes_per_second = config_.download_max_bytes_per_second();
    o.cache_max_bytes = config_.cache_max_bytes();
    o.report = QueueReport();
    o.locate = [this](const std::string& package, int64_t version) {
      return LocateContent(package, version);
    };
    o.inventory = [this] {
      std::vector<std::string> errors;
      return CollectInventory(CollectorContextFor(), &errors);
    };
    return o;
  }

  CollectorContext CollectorContextFor() const {
    CollectorContext ctx;
    ctx.dpkg_dir = config_.dpkg_dir();
    ctx.rpm_command = config_.rpm_command();
    ctx.hostname = config_.hostname();
    return ctx;
  }

  // --- inventory and the queue -------------------------------------------

  absl::Status QueueInventory(bool full) {
    std::vector<std::string> errors;
    v1::InventoryReport current = CollectInventory(CollectorContextFor(), &errors);
    for (const auto& e : errors) {
      RETURN_IF_ERROR(queue_.Enqueue(StateReport("inventory.collector_failed", 1, e)));
    }
    v1::InventoryReport base;
    const bool have_base =
        base.ParseFromString(ReadFileOrEmpty(dir_ + "/inventory.pb")) && base.inventory_seq() > 0;
    // The report's own sequence names the inventory.
    const int64_t inv_seq = queue_.next_seq();
    v1::ClientReport report;
    *report.mutable_inventory() =
        InventoryReportFor(have_base ? &base : nullptr, current, full, inv_seq);
    current.set_inventory_seq(inv_seq);
    current.set_full(true);
    // The base for the next delta is what this report makes the site hold;
    // it is saved before the report is queued, so a crash in between makes
    // the next delta miss its base and the site ask for a full one.
    RETURN_IF_ERROR(WriteFileDurably(dir_ + "/inventory.pb", current.SerializeAsString()));
    const auto& inv = report.inventory();
    LogInfo("agent.inventory", {{"full", inv.full()},
                                {"software", current.software_size()},
                                {"changed", inv.software_size()},
                                {"removed", inv.software_removed_size()},
                                {"seq", inv_seq}});
    return queue_.Enqueue(report);
  }

  absl::Status SendQueue() {
    while (true) {
      // Small reports go up on the held nudge channel: a fleet reporting a
      // deployment's state at once spares the MP a TLS handshake each.
      if (nudge_.held()) {
        OutboundQueue::Batch small = queue_.Next(kMaxChannelReports, kMaxChannelReportBytes);
        if (small.files.empty()) return absl::OkStatus();
        if (small.request.ByteSizeLong() <= kMaxChannelReportBytes) {
          auto acked = nudge_.SendReports(small.request, absl::Seconds(30));
          const int64_t last = small.request.reports(small.request.reports_size() - 1).seq();
          if (acked.ok() && *acked >= last) {
            queue_.Remove(small.files);
            LogDebug("agent.reports_sent",
                     {{"reports", small.files.size()}, {"through", *acked}, {"on", "channel"}});
            continue;
          }
          LogDebug("agent.channel_reports_failed", {{"error", acked.status()}});
        }
      }
      OutboundQueue::Batch batch = queue_.Next(kMaxReportsPerRequest, kMaxRequestBytes);
      if (batch.files.empty()) return absl::OkStatus();
      v1::ReportResponse resp;
      absl::Status s = OnSomeMp([&](v1::ManagementPoint::Stub& stub, const std::string&) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        return FromGrpcStatus(stub.Report(&ctx, batch.request, &resp));
      });
      if (s.code() == absl::StatusCode::kInvalidArgument ||
          s.code() == absl::StatusCode::kResourceExhausted) {
        // The MP will never take these: keep the rest flowing, say why.
        LogError("agent.reports_refused", {{"error", s}, {"reports", batch.files.size()}});
        queue_.Remove(batch.files);
        continue;
      }
      if (!s.ok()) return s;
      queue_.Remove(batch.files);
      LogDebug("agent.reports_sent",
               {{"reports", batch.files.size()}, {"through", resp.acknowledged_through_seq()}});
    }
  }

  // --- notifications -----------------------------------------------------

  void SetKnownVersion(const std::string& v) {
    absl::MutexLock lock(&mu_);
    known_version_ = v;
  }

  NudgeLoop::Hooks NudgeHooks() {
    NudgeLoop::Hooks h;
    h.mps = [this] {
      absl::MutexLock lock(&mu_);
      std::vector<std::pair<std::string, std::string>> out;
      for (const auto& mp : mps_) {
        auto it = nudge_addresses_.find(mp);
        out.emplace_back(mp, it == nudge_addresses_.end() ? "" : it->second);
      }
      return out;
    };
    h.has_identity = [this] { return HasIdentity(); };
    h.identity = [this]() -> absl::StatusOr<ChannelPem> {
      ChannelPem pem;
      ASSIGN_OR_RETURN(pem.ca, ReadFile(config_.ca_file()));
      ASSIGN_OR_RETURN(pem.cert_chain, ReadFile(dir_ + "/client.pem"));
      ASSIGN_OR_RETURN(pem.key, ReadFile(dir_ + "/client.key"));
      return pem;
    };
    h.known_version = [this] {
      absl::MutexLock lock(&mu_);
      return known_version_;
    };
    h.notified = [this](v1::NotificationKind kind, int spread_ms,
                        const v1::PolicyResponse* policy) {
      absl::MutexLock lock(&mu_);
      if (policy != nullptr) {  // nothing to fetch: applied on the agent's thread
        pushed_policy_ = *policy;
        wake_ = true;
        return;
      }
      switch (kind) {
        case v1::NOTIFICATION_KIND_FULL_INVENTORY:
          full_now_ = true;
          policy_now_ = true;  // clears the request at the MP
          break;
        case v1::NOTIFICATION_KIND_RUN_NOW:
          inventory_now_ = true;
          break;
        case v1::NOTIFICATION_KIND_WORK_WAITING:
          runbooks_->Wake();  // jobs for this runbook worker
          return;
        default:
          policy_now_ = true;
      }
      if (spread_ms > 0) {
        fetch_not_before_ = absl::Now() + absl::Milliseconds(absl::Uniform(bitgen_, 0, spread_ms));
      }
      wake_ = true;
    };
    h.locate = [this] {
      absl::Status s = OnSomeMp([this](v1::ManagementPoint::Stub& stub, const std::string& mp) {
        return Locate(stub, mp);
      });
      if (!s.ok()) LogWarning("agent.locate_failed", {{"error", s}});
    };
    // The policy poll interval depends on the channel: look at it again.
    h.channel = [this](bool) {
      absl::MutexLock lock(&mu_);
      wake_ = true;
    };
    return h;
  }

  const v1::AgentConfig config_;
  const std::string dir_;
  OutboundQueue queue_;
  NudgeLoop nudge_;
  v1::PolicyResponse policy_;                // the agent's thread only
  std::unique_ptr<InstallEngine> engine_;    // made by Init
  std::unique_ptr<ScriptEngine> scripts_;    // made by Init
  std::unique_ptr<LiveQueryEngine> live_;    // made by Init
  std::unique_ptr<RunbookWorker> runbooks_;  // made by Init
  std::map<std::string, int64_t> last_run_;  // the agent's thread only

  absl::Mutex mps_file_mu_;  // before mu_
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool policy_now_ ABSL_GUARDED_BY(mu_) = false;
  bool inventory_now_ ABSL_GUARDED_BY(mu_) = false;
  bool full_now_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> mps_ ABSL_GUARDED_BY(mu_);
  // The nudge channel of each MP (service location says), by MP address.
  std::map<std::string, std::string> nudge_addresses_ ABSL_GUARDED_BY(mu_);
  absl::Time fetch_not_before_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::optional<v1::PolicyResponse> pushed_policy_ ABSL_GUARDED_BY(mu_);  // from a nudge
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
  std::string known_version_ ABSL_GUARDED_BY(mu_);  // of the policy held
};

Agent::Agent(v1::AgentConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Agent::~Agent() = default;
absl::Status Agent::RunOnce() { return impl_->RunOnce(); }
absl::Status Agent::Run() { return impl_->Run(); }
void Agent::Stop() { impl_->Stop(); }
absl::StatusOr<v1::ContentLocation> Agent::GetContent(const std::string& package, int64_t version) {
  return impl_->GetContent(package, version);
}

}  // namespace strata::agent
