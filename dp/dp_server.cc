#include "dp/dp_server.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/base/backoff.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/base/version.h"
#include "common/content/download.h"
#include "common/content/library.h"
#include "common/content/transfer.h"
#include "common/metrics/metrics.h"
#include "common/net/tls.h"
#include "dp/nginx.h"
#include "strata/v1/content.grpc.pb.h"

namespace strata::dp {
namespace {

constexpr absl::Duration kReportEvery = absl::Seconds(60);
constexpr absl::Duration kCollectEvery = absl::Minutes(10);
constexpr absl::Duration kCollectGrace = absl::Hours(1);

bool IsRefusal(absl::StatusCode c) {
  return c == absl::StatusCode::kPermissionDenied || c == absl::StatusCode::kFailedPrecondition ||
         c == absl::StatusCode::kUnauthenticated || c == absl::StatusCode::kInvalidArgument;
}

using Key = std::pair<std::string, int64_t>;

}  // namespace

absl::Status ValidateDpConfig(const v1::DpConfig& c) {
  if (c.name().empty() || c.name().size() > 256)
    return absl::InvalidArgumentError("name: the DP's name (its certificate's CN), 1-256 bytes");
  if (c.site_address().empty())
    return absl::InvalidArgumentError("site_address: the address of its site server is required");
  if (c.tls().ca_file().empty() || c.tls().cert_file().empty() || c.tls().key_file().empty())
    return absl::InvalidArgumentError("tls: ca_file, cert_file and key_file are all required");
  if (c.content_library().empty())
    return absl::InvalidArgumentError("content_library: the library folder is required");
  if (c.state_dir().empty())
    return absl::InvalidArgumentError("state_dir: a folder for nginx's files is required");
  if (c.listen_address().empty())
    return absl::InvalidArgumentError(
        "listen_address: host:port (port 0 for any free port) or unix:/path is required");
  // nginx's configuration quotes these paths.
  for (const std::string* p : {&c.content_library(), &c.state_dir(), &c.tls().ca_file(),
                               &c.tls().cert_file(), &c.tls().key_file()}) {
    if (p->find_first_of("\"\\$;{}\n\r") != std::string::npos)
      return absl::InvalidArgumentError(
          absl::StrCat("path \"", *p, "\": no quote, backslash, $, ;, braces or newline"));
  }
  RETURN_IF_ERROR(metrics::ValidateMetricsConfig(c.metrics()));
  if (auto h = content::TransferHours::Parse(c.content_transfer().hours()); !h.ok())
    return Annotate(h.status(), "content_transfer");
  if (c.content_transfer().max_bytes_per_second() < 0 || c.validation_seconds() < 0 ||
      c.nginx_workers() < 0)
    return absl::InvalidArgumentError(
        "content_transfer.max_bytes_per_second, validation_seconds, nginx_workers: 0 or more");
  return absl::OkStatus();
}

class DpServer::Impl {
 public:
  explicit Impl(v1::DpConfig config) : config_(std::move(config)) {}
  ~Impl() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  absl::Status Start() {
    RETURN_IF_ERROR(ValidateDpConfig(config_));
    SetLogComponent(absl::StrCat("dp=", config_.name()));
    RETURN_IF_ERROR(LockStateDir());
    auto lib = content::Library::Open(config_.content_library());
    if (!lib.ok()) return Annotate(lib.status(), "content_library");
    library_ = std::move(*lib);
    ASSIGN_OR_RETURN(listener_, OpenListener(config_.listen_address()));
    bound_address_ =
        config_.public_address().empty() ? listener_.bound_address : config_.public_address();
    NginxOptions n;
    if (!config_.nginx().empty()) n.binary = config_.nginx();
    n.state_dir = config_.state_dir();
    n.library = config_.content_library();
    n.cert_file = config_.tls().cert_file();
    n.key_file = config_.tls().key_file();
    n.ca_file = config_.tls().ca_file();
    n.crl_file = config_.tls().crl_file();
    n.listen = listener_.config_address;
    n.workers = config_.nginx_workers();
    nginx_ = std::make_unique<Nginx>(n, listener_.fd);
    RETURN_IF_ERROR(nginx_->Start());
    ChannelOptions options;
    ASSIGN_OR_RETURN(site_channel_, MakeChannel(config_.site_address(), config_.tls(), options));
    link_ = v1::DistributionPointLink::NewStub(site_channel_);
    if (config_.pull_from().empty()) {
      source_ = content::GrpcBlobSource(site_channel_, "the site server");
    } else {
      ASSIGN_OR_RETURN(source_,
                       content::HttpsBlobSource(config_.pull_from(), config_.tls(),
                                                absl::StrCat("source DP ", config_.pull_from())));
    }
    WriteAddressFile(config_.address_file(), bound_address_);
    LogInfo("dp.started", {{"address", bound_address_},
                           {"site", config_.site_address()},
                           {"source", source_->name()},
                           {"version", kVersion}});
    ASSIGN_OR_RETURN(metrics_,
                     metrics::Endpoint::Start(config_.metrics(), "dp",
                                              [this](metrics::Sample& s) { CollectMetrics(s); }));
    threads_.emplace_back([this] { AttachLoop(); });
    threads_.emplace_back([this] { SyncLoop(); });
    return absl::OkStatus();
  }

  absl::Status Wait() {
    done_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return fatal_;
  }

  void Shutdown() {
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_) return;
      shut_down_ = true;
      if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
    }
    // Once (the guard above), and outside mu_, which a scrape in flight
    // takes: no scrape reads what stops below.
    metrics_.reset();
    if (!stop_.HasBeenNotified()) stop_.Notify();
    for (auto& t : threads_) t.join();
    threads_.clear();
    if (nginx_) nginx_->Stop();
    LogInfo("dp.stopped");
    if (!done_.HasBeenNotified()) done_.Notify();
  }

  const std::string& bound_address() const { return bound_address_; }

 private:
  void RequestStop(const absl::Status& s) {
    {
      absl::MutexLock lock(&mu_);
      if (fatal_.ok()) fatal_ = s;
    }
    if (!done_.HasBeenNotified()) done_.Notify();
  }

  // The assignment stream: what to hold, again whenever it changes.
  void AttachLoop() {
    Backoff backoff(std::chrono::milliseconds(500), std::chrono::seconds(30), /*jitter=*/true);
    v1::DpHello hello;
    hello.set_name(config_.name());
    hello.set_address(bound_address_);
    hello.set_version(kVersion);
    while (!stop_.HasBeenNotified()) {
      grpc::ClientContext ctx;
      {
        absl::MutexLock lock(&mu_);
        if (shut_down_) return;
        watch_ctx_ = &ctx;
      }
      auto reader = link_->WatchAssignment(&ctx, hello);
      v1::DpAssignment a;
      while (reader->Read(&a)) {
        backoff.Reset();
        absl::MutexLock lock(&mu_);
        if (!attached_) LogInfo("dp.attached", {{"site", a.site_code()}});
        attached_ = true;
        assignment_ = a;
        ++assignment_generation_;
      }
      absl::Status s = FromGrpcStatus(reader->Finish());
      {
        absl::MutexLock lock(&mu_);
        watch_ctx_ = nullptr;
        attached_ = false;
      }
      if (stop_.HasBeenNotified()) return;
      if (IsRefusal(s.code())) {
        LogError("dp.refused", {{"site", config_.site_address()}, {"error", s}});
        RequestStop(Annotate(s, "the site server refused this distribution point"));
        return;
      }
      LogWarning("dp.site_unreachable", {{"site", config_.site_address()}, {"error", s}});
      stop_.WaitForNotificationWithTimeout(absl::FromChrono(backoff.Next()));
    }
  }

  bool AssignmentChanged(int64_t seen) {
    absl::MutexLock lock(&mu_);
    return assignment_generation_ != seen;
  }

  void SyncLoop() {
    content::RateLimiter limiter(config_.content_transfer().max_bytes_per_second());
    v1::DpLinkLimits own;  // the configuration's, unless an admin set a content link
    own.set_max_bytes_per_second(config_.content_transfer().max_bytes_per_second());
    own.set_hours(config_.content_transfer().hours());
    v1::DpLinkLimits applied = own;
    auto parsed = content::TransferHours::Parse(own.hours());  // checked at start
    content::TransferHours hours = parsed.ok() ? *parsed : content::TransferHours();
    const absl::Duration validate_every =
        absl::Seconds(config_.validation_seconds() > 0 ? config_.validation_seconds() : 86400);
    absl::Time next_validation = absl::Now() + validate_every;
    absl::Time next_collect = absl::Now() + kCollectEvery;
    int64_t seen = 0;
    while (!stop_.HasBeenNotified()) {
      v1::DpAssignment a;
      {
        absl::MutexLock lock(&mu_);
        auto changed = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return assignment_generation_ != seen || shut_down_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&changed), absl::Seconds(2));
        if (shut_down_) return;
        seen = assignment_generation_;
        if (!assignment_.has_value()) continue;
        a = *assignment_;
      }
      const v1::DpLinkLimits& want = a.has_link() ? a.link() : own;
      if (want.SerializeAsString() != applied.SerializeAsString()) {
        if (auto h = content::TransferHours::Parse(want.hours()); h.ok()) {
          hours = *h;
          limiter.SetRate(want.max_bytes_per_second());
          applied = want;
          LogInfo("dp.link_changed", {{"max_bytes_per_second", want.max_bytes_per_second()},
                                      {"hours", want.hours()},
                                      {"from", a.has_link() ? "content link" : "configuration"}});
        } else {  // the provider checks hours: kept as it was, said once
          LogWarning("dp.link_refused", {{"error", h.status()}});
          applied = want;
        }
      }
      bool pending = Sync(a, hours, limiter, seen);
      const bool requested = a.validate_requested_unix_ms() > library_->last_validated_ms();
      if (absl::Now() >= next_validation || requested) {
        Validate();
        next_validation = absl::Now() + validate_every;
        pending = true;
      }
      if (absl::Now() >= next_collect) {
        auto c = library_->Collect(kCollectGrace);
        if (c.ok() && c->blobs > 0)
          LogInfo("dp.collected", {{"blobs", c->blobs}, {"bytes", c->bytes}});
        next_collect = absl::Now() + kCollectEvery;
      }
      Report(false);
      (void)pending;  // work left waits for the next round (2 s, or a new assignment)
      // A renewed certificate (or CA) is served without a restart.
      if (auto reloaded = nginx_->ReloadIfChanged(); !reloaded.ok())
        LogWarning("dp.nginx_not_reloaded", {{"error", reloaded.status()}});
    }
  }

  // Holds what `a` names and nothing else; true if work remains.
  bool Sync(const v1::DpAssignment& a, const content::TransferHours& hours,
            content::RateLimiter& limiter, int64_t generation) {
    std::set<Key> wanted;
    for (const auto& m : a.versions()) wanted.insert({m.package(), m.version()});
    for (const v1::ContentManifest& m : library_->Versions()) {
      if (wanted.count({m.package(), m.version()}) > 0) continue;
      if (library_->RemoveVersion(m.package(), m.version()).ok())
        LogInfo("dp.version_released", {{"package", m.package()}, {"version", m.version()}});
    }
    for (auto it = states_.begin(); it != states_.end();) {
      it = wanted.count(it->first) > 0 ? std::next(it) : states_.erase(it);
    }
    bool pending = false;
    for (const v1::ContentManifest& m : a.versions()) {
      if (stop_.HasBeenNotified() || AssignmentChanged(generation)) return true;
      const Key key{m.package(), m.version()};
      std::vector<content::BlobRef> missing = library_->Missing(m);
      v1::DpVersionState& st = states_[key];
      st.set_package(m.package());
      st.set_version(m.version());
      const int64_t total = content::TotalBytes(content::DistinctBlobs(m));
      st.set_bytes_total(total);
      if (missing.empty() && library_->HoldsExactly(m)) {
        if (st.state() != "installed") {
          st.set_state("installed");
          st.set_bytes_done(total);
          st.clear_error();
        }
        continue;
      }
      st.set_state("transferring");
      st.set_bytes_done(total - content::TotalBytes(missing));
      Report(false);
      content::CountingSource counting(*source_);
      absl::Status s = content::BringVersion(m, *library_, counting, limiter, hours, &stop_,
                                             [&](const content::Progress& p) {
                                               st.set_bytes_done(p.bytes_done);
                                               Report(false);
                                             });
      if (s.ok()) {
        st.set_state("installed");
        st.set_bytes_done(total);
        st.clear_error();
        for (const auto& b : missing) {
          auto f = failures_.find(b.sha256);
          if (f != failures_.end()) f->second.set_repaired(true);
        }
        LogInfo("dp.version_installed", {{"package", m.package()},
                                         {"version", m.version()},
                                         {"bytes_fetched", counting.bytes}});
        continue;
      }
      if (absl::IsCancelled(s)) return true;
      const bool waiting = absl::IsNotFound(s) || absl::IsUnavailable(s);
      st.set_state(waiting ? "queued" : "failed");
      if (st.error() != s.ToString().substr(0, 1024))  // logged when the reason changes
        LogWarning("dp.version_not_installed",
                   {{"package", m.package()}, {"version", m.version()}, {"error", s}});
      st.set_error(s.ToString().substr(0, 1024));
      pending = true;
    }
    return pending;
  }

  void Validate() {
    auto bad = library_->Validate();
    if (!bad.ok()) {
      LogWarning("dp.validation_failed", {{"error", bad.status()}});
      return;
    }
    for (const auto& m : *bad) {
      const std::string files = absl::StrJoin(m.files, "; ");
      LogWarning("dp.blob_corrupt", {{"sha256", m.sha256}, {"found", m.actual}, {"files", files}});
      v1::DpValidationFailure& f = failures_[m.sha256];
      f.set_sha256(m.sha256);
      f.set_found(m.actual);
      f.set_files(files.substr(0, 4096));
      f.set_repaired(false);
    }
    LogInfo("dp.validated", {{"bad_blobs", static_cast<int64_t>(bad->size())}});
    Report(true);
  }

  // Sends the DP's state when it changed (progress at most once a second)
  // or every minute.
  void Report(bool force) {
    v1::DpContentReport r;
    r.set_name(config_.name());
    for (const auto& [key, st] : states_) *r.add_versions() = st;
    for (const auto& [hash, f] : failures_) *r.add_failures() = f;
    {
      absl::MutexLock lock(&mu_);
      shown_ = r;  // what a scrape of the metrics endpoint shows
    }
    std::string bytes = r.SerializeAsString();
    const absl::Time now = absl::Now();
    if (!force && bytes == last_report_ && now - last_report_at_ < kReportEvery) return;
    if (!force && now - last_report_at_ < absl::Seconds(1) && bytes != last_report_ &&
        StatesOnlyProgressed(r))
      return;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::DpReportAck ack;
    absl::Status s = FromGrpcStatus(link_->ReportContent(&ctx, r, &ack));
    if (!s.ok()) {
      LogWarning("dp.report_failed", {{"error", s}});
      return;
    }
    last_report_ = std::move(bytes);
    last_report_at_ = now;
    last_reported_states_.clear();
    for (const auto& v : r.versions())
      last_reported_states_[{v.package(), v.version()}] = v.state();
    // Repaired failures are on record at the site: forget them here.
    for (auto it = failures_.begin(); it != failures_.end();)
      it = it->second.repaired() ? failures_.erase(it) : std::next(it);
  }

  // A scrape of the metrics endpoint (on its own thread): the content
  // state as last reported to the site.
  void CollectMetrics(metrics::Sample& s) {
    absl::MutexLock lock(&mu_);
    s.Gauge("strata_dp_site_attached", "1 while the DP holds its assignment stream to the site",
            attached_ ? 1 : 0);
    std::map<std::string, std::pair<int64_t, int64_t>> by_state;  // versions, bytes pending
    for (const std::string state : {"queued", "transferring", "installed", "failed"})
      by_state[state] = {0, 0};
    for (const auto& v : shown_.versions()) {
      auto& [versions, pending] = by_state[v.state()];
      ++versions;
      pending += std::max<int64_t>(v.bytes_total() - v.bytes_done(), 0);
    }
    for (const auto& [state, figures] : by_state) {
      s.Gauge("strata_dp_content_versions", "Content versions this DP holds or fetches, by state",
              static_cast<double>(figures.first), {{"state", state}});
      s.Gauge("strata_dp_content_bytes_pending", "Bytes still to transfer, by state",
              static_cast<double>(figures.second), {{"state", state}});
    }
    int64_t damaged = 0;
    for (const auto& f : shown_.failures()) damaged += f.repaired() ? 0 : 1;
    s.Gauge("strata_dp_validation_failures", "Blobs found damaged by validation, not yet repaired",
            static_cast<double>(damaged));
  }

  // Whether `r` differs from the last report only in bytes done.
  bool StatesOnlyProgressed(const v1::DpContentReport& r) {
    if (static_cast<size_t>(r.versions_size()) != last_reported_states_.size()) return false;
    for (const auto& v : r.versions()) {
      auto it = last_reported_states_.find({v.package(), v.version()});
      if (it == last_reported_states_.end() || it->second != v.state()) return false;
    }
    return true;
  }

  // One DP per state folder: a second one started with the same
  // configuration would fight the first over nginx's files and address.
  absl::Status LockStateDir() {
    const std::string& dir = config_.state_dir();
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
      return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", std::strerror(errno)));
    const std::string path = dir + "/dp.lock";
    lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0)
      return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
      return absl::FailedPreconditionError(
          absl::StrCat("another strata-dp runs with state_dir ", dir, " (", path,
                       " is locked): stop it first, or give this one its own"));
    return absl::OkStatus();
  }

  v1::DpConfig config_;
  int lock_fd_ = -1;  // held while the DP runs; closed with the process
  std::unique_ptr<content::Library> library_;
  Listener listener_;
  std::string bound_address_;
  std::unique_ptr<Nginx> nginx_;
  std::unique_ptr<metrics::Endpoint> metrics_;
  std::shared_ptr<grpc::Channel> site_channel_;
  std::unique_ptr<v1::DistributionPointLink::Stub> link_;
  std::unique_ptr<content::BlobSource> source_;
  std::vector<std::thread> threads_;
  absl::Notification stop_, done_;

  absl::Mutex mu_;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  v1::DpContentReport shown_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* watch_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::optional<v1::DpAssignment> assignment_ ABSL_GUARDED_BY(mu_);
  int64_t assignment_generation_ ABSL_GUARDED_BY(mu_) = 0;

  // The sync loop's own (one thread).
  std::map<Key, v1::DpVersionState> states_;
  std::map<std::string, v1::DpValidationFailure> failures_;
  std::string last_report_;
  absl::Time last_report_at_ = absl::InfinitePast();
  std::map<Key, std::string> last_reported_states_;
};

DpServer::DpServer(v1::DpConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
DpServer::~DpServer() { Shutdown(); }
absl::Status DpServer::Start() { return impl_->Start(); }
absl::Status DpServer::Wait() { return impl_->Wait(); }
void DpServer::Shutdown() { impl_->Shutdown(); }
const std::string& DpServer::bound_address() const { return impl_->bound_address(); }

}  // namespace strata::dp
