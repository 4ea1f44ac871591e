#include "agent/agent.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/collectors.h"
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

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `data` durably: temp file, fsync, rename, fsync of the directory.
absl::Status WriteDurably(const std::string& path, const std::string& data, mode_t mode = 0600) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) {
      close(fd);
      return absl::InternalError(absl::StrCat("cannot write ", tmp));
    }
    off += n;
  }
  if (fsync(fd) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("cannot sync ", tmp));
  }
  close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp));
  }
  int dfd = ::open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

std::string SoftwareKey(const v1::SoftwareItem& s) { return s.name() + "\t" + s.architecture(); }

// Hardware as compared for deltas: without what changes by itself.
std::string HardwareFingerprint(v1::HardwareInventory hw) {
  hw.mutable_system()->clear_uptime_s();
  hw.mutable_system()->clear_boot_time_unix();
  for (auto& d : *hw.mutable_disks()) d.clear_free_bytes();
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  hw.SerializeToCodedStream(&coded);
  return out;
}

}  // namespace

absl::Status ValidateAgentConfig(const v1::AgentConfig& c) {
  if (c.management_points().empty()) {
    return absl::InvalidArgumentError("management_points: at least one MP address is required");
  }
  if (c.ca_file().empty()) return absl::InvalidArgumentError("ca_file: the root CA is required");
  if (c.state_dir().empty()) return absl::InvalidArgumentError("state_dir: required");
  return absl::OkStatus();
}

class Agent::Impl {
 public:
  explicit Impl(v1::AgentConfig config) : config_(std::move(config)) {
    if (config_.dpkg_dir().empty()) config_.set_dpkg_dir("/var/lib/dpkg");
    if (config_.rpm_command().empty()) config_.set_rpm_command("rpm");
    if (config_.max_queue_reports() <= 0) config_.set_max_queue_reports(10000);
    if (config_.hostname().empty()) {
      utsname u;
      if (uname(&u) == 0) config_.set_hostname(u.nodename);
    }
    if (config_.hardware_id().empty()) {
      config_.set_hardware_id(std::string(absl::StripAsciiWhitespace(ReadText("/etc/machine-id"))));
    }
    if (config_.enrollment_token().empty() && !config_.enrollment_token_file().empty()) {
      config_.set_enrollment_token(
          std::string(absl::StripAsciiWhitespace(ReadText(config_.enrollment_token_file()))));
    }
    dir_ = config_.state_dir();
  }

  ~Impl() { Stop(); }

  absl::Status Init() {
    RETURN_IF_ERROR(ValidateAgentConfig(config_));
    std::error_code ec;
    fs::create_directories(dir_ + "/queue", ec);
    if (ec) return absl::InternalError(absl::StrCat("state_dir: ", ec.message()));
    chmod(dir_.c_str(), 0700);
    int64_t seq = 0;
    absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadText(dir_ + "/seq")), &seq);
    seq_ = seq;
    policy_.ParseFromString(ReadText(dir_ + "/policy.pb"));
    SetKnownVersion(policy_.version());
    LoadSchedule();
    for (absl::string_view mp : absl::StrSplit(ReadText(dir_ + "/mps"), '\n', absl::SkipEmpty())) {
      AddMp(std::string(mp));
    }
    for (const auto& mp : config_.management_points()) AddMp(mp);
    return absl::OkStatus();
  }

  absl::Status RunOnce() {
    RETURN_IF_ERROR(Init());
    RETURN_IF_ERROR(Cycle(/*all_due=*/true));
    return SendQueue();
  }

  absl::Status Run() {
    RETURN_IF_ERROR(Init());
    std::thread notify([this] { NotifyLoop(); });
    int backoff_s = 5;
    bool started = false;
    while (!stopping()) {
      absl::Status s = Cycle(false);
      if (s.ok() && !started) {
        s = Enqueue(StateReport("agent.started", 0, absl::StrCat("strata-agent ", kVersion)));
        started = s.ok();
      }
      if (s.ok()) s = SendQueue();
      int64_t wait_ms;
      if (!s.ok()) {
        LogWarning("agent.cycle_failed", {{"error", s}, {"retry_s", backoff_s}});
        wait_ms = backoff_s * 1000;
        backoff_s = std::min(backoff_s * 2, 300);
      } else {
        backoff_s = 5;
        wait_ms = std::clamp<int64_t>(NextDueMs() - WallClockMs(), 100, 3600 * 1000);
      }
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stopping_ || wake_; });
      wake_ = false;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (notify_ctx_) notify_ctx_->TryCancel();
    }
    notify.join();
    return absl::OkStatus();
  }

  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (notify_ctx_) notify_ctx_->TryCancel();
    cv_.notify_all();
  }

 private:
  bool stopping() {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

  void AddMp(const std::string& mp) {
    std::string a(absl::StripAsciiWhitespace(mp));
    if (a.empty()) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (std::find(mps_.begin(), mps_.end(), a) == mps_.end()) mps_.push_back(a);
  }

  // --- schedules ---------------------------------------------------------

  void LoadSchedule() {
    for (absl::string_view line :
         absl::StrSplit(ReadText(dir_ + "/schedule"), '\n', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
      int64_t v = 0;
      if (absl::SimpleAtoi(kv.second, &v)) last_run_[kv.first] = v;
    }
  }

  void SaveSchedule() {
    std::string out;
    for (const auto& [k, v] : last_run_) absl::StrAppend(&out, k, "=", v, "\n");
    (void)WriteDurably(dir_ + "/schedule", out);
  }

  int64_t IntervalMs(const std::string& name) {
    const auto& st = policy_.settings();
    int64_t s = name == "policy"      ? st.policy_poll_seconds()
                : name == "inventory" ? st.inventory_seconds()
                                      : st.heartbeat_seconds();
    if (s <= 0) s = name == "policy" ? 3600 : 7 * 86400;
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
      RETURN_IF_ERROR(Enqueue(hb));
      last_run_["heartbeat"] = now;
    }
    SaveSchedule();
    return absl::OkStatus();
  }

  bool TakeFlag(bool* flag) {
    std::lock_guard<std::mutex> lock(mu_);
    bool v = *flag;
    *flag = false;
    return v;
  }

  std::vector<std::string> LocalAddresses() {
    std::vector<std::string> ips;
    CollectorContext ctx;
    v1::InventoryReport inv;
    for (const auto& c : Collectors()) {
      if (std::string(c.name) == "network") (void)c.collect(ctx, &inv);
    }
    for (const auto& a : inv.hardware().adapters()) {
      if (a.name() == "lo") continue;
      for (const auto& ip : a.ipv4()) ips.push_back(ip.substr(0, ip.find('/')));
      for (const auto& ip : a.ipv6()) ips.push_back(ip.substr(0, ip.find('/')));
    }
    return ips;
  }

  // --- registration ------------------------------------------------------

  bool HasIdentity() {
    return fs::exists(dir_ + "/client.pem") && fs::exists(dir_ + "/client.key");
  }

  absl::Status EnsureRegistered() {
    if (HasIdentity()) return absl::OkStatus();
    std::string key = ReadText(dir_ + "/pending.key");
    std::string csr = ReadText(dir_ + "/pending.csr");
    if (key.empty() || csr.empty()) {
      ASSIGN_OR_RETURN(KeyAndCsr made, MakeKeyAndCsr(config_.hostname()));
      RETURN_IF_ERROR(WriteDurably(dir_ + "/pending.key", made.key_pem));
      RETURN_IF_ERROR(WriteDurably(dir_ + "/pending.csr", made.csr_pem));
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
      RETURN_IF_ERROR(WriteDurably(dir_ + "/client_id", resp.client_id() + "\n", 0644));
      if (resp.state() == v1::REGISTRATION_STATE_PENDING) {
        LogInfo("agent.pending_approval", {{"client", resp.client_id()}, {"mp", mp}});
        return absl::UnavailableError(absl::StrCat("registered as ", resp.client_id(),
                                                   "; waiting for an administrator's approval"));
      }
      RETURN_IF_ERROR(WriteDurably(dir_ + "/client.key", key));
      RETURN_IF_ERROR(WriteDurably(dir_ + "/client.pem", resp.certificate_pem(), 0644));
      fs::remove(dir_ + "/pending.key");
      fs::remove(dir_ + "/pending.csr");
      LogInfo("agent.registered",
              {{"client", resp.client_id()}, {"site", resp.site_code()}, {"mp", mp}});
      return absl::OkStatus();
    }
    return last;
  }

  std::vector<std::string> Mps() {
    std::lock_guard<std::mutex> lock(mu_);
    return mps_;
  }

  // A stub to the current MP (the first that answers), with this client's
  // certificate.
  absl::StatusOr<std::unique_ptr<v1::ManagementPoint::Stub>> Stub(const std::string& mp) {
    v1::TlsConfig tls;
    tls.set_ca_file(config_.ca_file());
    tls.set_cert_file(dir_ + "/client.pem");
    tls.set_key_file(dir_ + "/client.key");
    ChannelOptions options;
    options.max_message_bytes = 16 << 20;
    options.keepalive_ms = 60000;  // an MP holds tens of thousands of these
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

  // Returns whether the site asked for a full inventory.
  absl::StatusOr<bool> FetchPolicy() {
    bool full = false;
    RETURN_IF_ERROR(OnSomeMp([&](v1::ManagementPoint::Stub& stub, const std::string& mp) {
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
      {
        std::lock_guard<std::mutex> lock(mu_);
        mps_ = mps;
      }
      (void)WriteDurably(dir_ + "/mps", absl::StrJoin(mps, "\n") + "\n", 0644);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::PolicyRequest req;
      req.set_current_version(policy_.version());
      v1::PolicyResponse resp;
      RETURN_IF_ERROR(FromGrpcStatus(stub.GetPolicy(&ctx, req, &resp)));
      full = resp.full_inventory_requested();
      if (!resp.not_modified()) {
        resp.clear_full_inventory_requested();
        policy_ = resp;
        SetKnownVersion(resp.version());
        RETURN_IF_ERROR(WriteDurably(dir_ + "/policy.pb", resp.SerializeAsString()));
        LogInfo("agent.policy", {{"version", resp.version()},
                                 {"poll_s", resp.settings().policy_poll_seconds()},
                                 {"inventory_s", resp.settings().inventory_seconds()},
                                 {"heartbeat_s", resp.settings().heartbeat_seconds()}});
      }
      return absl::OkStatus();
    }));
    return full;
  }

  // --- inventory and the queue -------------------------------------------

  absl::Status QueueInventory(bool full) {
    std::vector<std::string> errors;
    CollectorContext ctx;
    ctx.dpkg_dir = config_.dpkg_dir();
    ctx.rpm_command = config_.rpm_command();
    ctx.hostname = config_.hostname();
    v1::InventoryReport current = CollectInventory(ctx, &errors);
    for (const auto& e : errors) {
      RETURN_IF_ERROR(Enqueue(StateReport("inventory.collector_failed", 1, e)));
    }
    v1::InventoryReport base;
    bool have_base =
        base.ParseFromString(ReadText(dir_ + "/inventory.pb")) && base.inventory_seq() > 0;
    v1::ClientReport report;
    auto* inv = report.mutable_inventory();
    const int64_t inv_seq = seq_ + 1;  // the report's own sequence names the inventory
    if (full || !have_base) {
      *inv = current;
      inv->set_full(true);
    } else {
      inv->set_full(false);
      inv->set_base_seq(base.inventory_seq());
      std::map<std::string, const v1::SoftwareItem*> before;
      for (const auto& s : base.software()) before[SoftwareKey(s)] = &s;
      std::set<std::string> now;
      for (const auto& s : current.software()) {
        now.insert(SoftwareKey(s));
        auto it = before.find(SoftwareKey(s));
        if (it == before.end() || it->second->SerializeAsString() != s.SerializeAsString()) {
          *inv->add_software() = s;
        }
      }
      for (const auto& [key, s] : before) {
        if (!now.count(key)) {
          auto* r = inv->add_software_removed();
          r->set_name(s->name());
          r->set_architecture(s->architecture());
        }
      }
      if (HardwareFingerprint(base.hardware()) != HardwareFingerprint(current.hardware())) {
        *inv->mutable_hardware() = current.hardware();
      }
    }
    inv->set_inventory_seq(inv_seq);
    current.set_inventory_seq(inv_seq);
    current.set_full(true);
    // The base for the next delta is what this report makes the site hold;
    // it is saved before the report is queued, so a crash in between makes
    // the next delta miss its base and the site ask for a full one.
    RETURN_IF_ERROR(WriteDurably(dir_ + "/inventory.pb", current.SerializeAsString()));
    LogInfo("agent.inventory", {{"full", inv->full()},
                                {"software", current.software_size()},
                                {"changed", inv->software_size()},
                                {"removed", inv->software_removed_size()},
                                {"seq", inv_seq}});
    return Enqueue(report);
  }

  static v1::ClientReport StateReport(const std::string& topic, int severity,
                                      const std::string& text) {
    v1::ClientReport r;
    r.mutable_state()->set_topic(topic);
    r.mutable_state()->set_severity(severity);
    r.mutable_state()->set_text(text.substr(0, 4000));
    r.mutable_state()->set_at_unix_ms(WallClockMs());
    return r;
  }

  absl::Status Enqueue(v1::ClientReport report) {
    std::lock_guard<std::mutex> lock(queue_mu_);
    int64_t seq = seq_ + 1;
    RETURN_IF_ERROR(WriteDurably(dir_ + "/seq", absl::StrCat(seq, "\n")));
    seq_ = seq;
    report.set_seq(seq);
    report.set_created_unix_ms(WallClockMs());
    RETURN_IF_ERROR(WriteDurably(QueuePath(seq), report.SerializeAsString()));
    TrimQueue();
    return absl::OkStatus();
  }

  std::string QueuePath(int64_t seq) { return absl::StrFormat("%s/queue/%020d.pb", dir_, seq); }

  std::vector<std::string> QueueFiles() {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir_ + "/queue")) {
      if (e.path().extension() == ".pb") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  // Beyond max_queue_reports, the oldest heartbeats and state messages go
  // (inventory never: the site would see a gap).
  void TrimQueue() {
    auto files = QueueFiles();
    int64_t excess = static_cast<int64_t>(files.size()) - config_.max_queue_reports();
    for (const auto& f : files) {
      if (excess <= 0) break;
      v1::ClientReport r;
      if (r.ParseFromString(ReadText(f)) && !r.has_inventory()) {
        fs::remove(f);
        --excess;
      }
    }
  }

  absl::Status SendQueue() {
    while (true) {
      auto files = QueueFiles();
      if (files.empty()) return absl::OkStatus();
      v1::ReportRequest req;
      int64_t bytes = 0;
      std::vector<std::string> batch;
      for (const auto& f : files) {
        v1::ClientReport r;
        std::string data = ReadText(f);
        if (!r.ParseFromString(data)) {
          LogWarning("agent.queue_unreadable", {{"file", f}});
          fs::remove(f);
          continue;
        }
        if (!batch.empty() && (req.reports_size() >= kMaxReportsPerRequest ||
                               bytes + static_cast<int64_t>(data.size()) > kMaxRequestBytes)) {
          break;
        }
        bytes += data.size();
        *req.add_reports() = std::move(r);
        batch.push_back(f);
      }
      if (batch.empty()) continue;
      v1::ReportResponse resp;
      absl::Status s = OnSomeMp([&](v1::ManagementPoint::Stub& stub, const std::string&) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        return FromGrpcStatus(stub.Report(&ctx, req, &resp));
      });
      if (s.code() == absl::StatusCode::kInvalidArgument ||
          s.code() == absl::StatusCode::kResourceExhausted) {
        // The MP will never take these: keep the rest flowing, say why.
        LogError("agent.reports_refused", {{"error", s}, {"reports", batch.size()}});
        for (const auto& f : batch) fs::remove(f);
        continue;
      }
      if (!s.ok()) return s;
      for (const auto& f : batch) fs::remove(f);
      LogDebug("agent.reports_sent",
               {{"reports", batch.size()}, {"through", resp.acknowledged_through_seq()}});
    }
  }

  // --- notifications -----------------------------------------------------

  void SetKnownVersion(const std::string& v) {
    std::lock_guard<std::mutex> lock(mu_);
    known_version_ = v;
  }

  // Holds a notification stream to one MP; an MP that does not answer makes
  // it try the next one (failover, as for the other calls).
  void NotifyLoop() {
    int backoff_ms = 1000;
    size_t next = 0;
    while (!stopping()) {
      if (!HasIdentity()) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
        continue;
      }
      auto mps = Mps();
      if (mps.empty()) return;  // the configuration requires one; nothing to hold
      const std::string mp = mps[next % mps.size()];
      auto stub = Stub(mp);
      bool answered = false;
      if (stub.ok()) {
        grpc::ClientContext ctx;
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (stopping_) break;
          notify_ctx_ = &ctx;
        }
        auto reader = (*stub)->Notify(&ctx, v1::NotifyRequest());
        v1::Notification n;
        while (reader->Read(&n)) {
          backoff_ms = 1000;
          answered = true;
          std::lock_guard<std::mutex> lock(mu_);
          switch (n.kind()) {
            case v1::NOTIFICATION_KIND_CONNECTED:
              LogInfo("agent.notify_connected", {{"mp", mp}, {"version", n.detail()}});
              // The MP's policy version: a change made while no stream was
              // held (before the first, between two) is not missed.
              if (n.detail().empty() || n.detail() == known_version_) continue;
              policy_now_ = true;
              break;
            case v1::NOTIFICATION_KIND_POLICY_CHANGED:
              policy_now_ = true;
              break;
            case v1::NOTIFICATION_KIND_FULL_INVENTORY:
              full_now_ = true;
              policy_now_ = true;  // clears the request at the MP
              break;
            case v1::NOTIFICATION_KIND_RUN_NOW:
              inventory_now_ = true;
              break;
            default:
              continue;
          }
          LogInfo("agent.notified", {{"kind", v1::NotificationKind_Name(n.kind())}});
          wake_ = true;
          cv_.notify_all();
        }
        grpc::Status s = reader->Finish();
        {
          std::lock_guard<std::mutex> lock(mu_);
          notify_ctx_ = nullptr;
        }
        if (!stopping()) {
          LogInfo("agent.notify_stream_ended", {{"mp", mp}, {"error", FromGrpcStatus(s)}});
        }
      }
      if (!answered) {
        ++next;
        if (next % mps.size() != 0) continue;  // the next MP at once
      }
      std::unique_lock<std::mutex> lock(mu_);
      // Jittered (0.5-1.5 x), so that a fleet whose MP restarted does not
      // reconnect in step.
      std::uniform_int_distribution<int> jitter(backoff_ms / 2, backoff_ms * 3 / 2);
      cv_.wait_for(lock, std::chrono::milliseconds(jitter(jitter_rng_)), [&] { return stopping_; });
      backoff_ms = std::min(backoff_ms * 2, 60000);
    }
  }

  v1::AgentConfig config_;
  std::string dir_;
  v1::PolicyResponse policy_;
  std::map<std::string, int64_t> last_run_;
  std::mutex queue_mu_;
  int64_t seq_ = 0;  // guarded by queue_mu_ after Init

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool wake_ = false;
  bool policy_now_ = false;
  bool inventory_now_ = false;
  bool full_now_ = false;
  std::vector<std::string> mps_;
  std::string known_version_;                            // of the policy held
  std::minstd_rand jitter_rng_{std::random_device{}()};  // NotifyLoop only
  grpc::ClientContext* notify_ctx_ = nullptr;
};

Agent::Agent(v1::AgentConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Agent::~Agent() = default;
absl::Status Agent::RunOnce() { return impl_->RunOnce(); }
absl::Status Agent::Run() { return impl_->Run(); }
void Agent::Stop() { impl_->Stop(); }

}  // namespace strata::agent
