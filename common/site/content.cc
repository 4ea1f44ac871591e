#include "common/site/content.h"

#include "common/site/content_catalog.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/content/hash.h"
#include "common/content/transfer.h"
#include "common/net/tls.h"
#include "common/store/database.h"
#include "strata/v1/content.grpc.pb.h"

namespace strata::site {
namespace {

constexpr int64_t kMessageBytes = 1 << 20;

// One library's state of one version (site server or distribution point).
constexpr char kUpsertStatus[] =
    "INSERT INTO content_status (site_code, location, package, version, state, bytes_done, "
    "bytes_total, error, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) ON CONFLICT "
    "(site_code, location, package, version) DO UPDATE SET state = EXCLUDED.state, bytes_done = "
    "EXCLUDED.bytes_done, bytes_total = EXCLUDED.bytes_total, error = EXCLUDED.error, "
    "updated_at = now()";
constexpr int kMaxStateQueries = 100000;
// Unreferenced blobs younger than this stay: an upload in flight has not
// committed its version yet.
constexpr absl::Duration kCollectGrace = absl::Hours(1);
constexpr absl::Duration kCollectEvery = absl::Minutes(10);

absl::Status NoLibrary(const std::string& site) {
  return absl::FailedPreconditionError(absl::StrCat(
      "site ", site, " keeps no content library (set content_library in its configuration)"));
}

absl::Status Allow(const grpc::ServerContext& ctx, std::initializer_list<const char*> roles,
                   absl::string_view what) {
  ASSIGN_OR_RETURN(PeerIdentity peer, PeerFromContext(ctx));
  for (const char* r : roles)
    if (peer.role == r) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(what, " is for ", absl::StrJoin(roles, ", "),
                                                  "; the certificate is for a ", peer.role));
}

}  // namespace

// ---- The ContentLibrary service -------------------------------------------

class SiteContent::Service final : public v1::ContentLibrary::Service {
 public:
  Service(content::Library* library, std::string site)
      : library_(library), site_(std::move(site)) {}

  grpc::Status GetBlob(grpc::ServerContext* ctx, const v1::BlobRequest* req,
                       grpc::ServerWriter<v1::BlobChunk>* out) override {
    if (auto s = Allow(*ctx, {"site", "dp"}, "taking content"); !s.ok()) return ToGrpcStatus(s);
    if (library_ == nullptr) return ToGrpcStatus(NoLibrary(site_));
    if (!content::IsSha256Hex(req->sha256()))
      return ToGrpcStatus(absl::InvalidArgumentError("sha256: not 64 lower-case hex digits"));
    const std::string path = library_->BlobPath(req->sha256());
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return ToGrpcStatus(absl::NotFoundError(
          absl::StrCat("site ", site_, " does not hold blob ", req->sha256(), " (yet)")));
    struct stat st;
    ::fstat(fd, &st);
    const int64_t size = st.st_size;
    if (req->offset() < 0 || req->offset() > size) {
      ::close(fd);
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("offset ", req->offset(), " is outside the blob's ", size, " bytes")));
    }
    v1::BlobChunk chunk;
    for (int64_t off = req->offset(); off < size && !ctx->IsCancelled();) {
      std::string* buf = chunk.mutable_data();  // read straight into the message
      buf->resize(static_cast<size_t>(std::min(kMessageBytes, size - off)));
      ssize_t n = ::pread(fd, buf->data(), buf->size(), off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        return ToGrpcStatus(absl::InternalError(absl::StrCat("cannot read blob ", req->sha256())));
      }
      buf->resize(static_cast<size_t>(n));
      chunk.set_offset(off);
      chunk.set_size(size);
      if (!out->Write(chunk)) break;
      off += n;
    }
    ::close(fd);
    return grpc::Status::OK;
  }

  grpc::Status PutBlob(grpc::ServerContext* ctx, grpc::ServerReader<v1::PutBlobChunk>* in,
                       v1::PutBlobResult* out) override {
    if (auto s = Allow(*ctx, {"provider"}, "uploading content"); !s.ok()) return ToGrpcStatus(s);
    if (library_ == nullptr) return ToGrpcStatus(NoLibrary(site_));
    v1::PutBlobChunk chunk;
    if (!in->Read(&chunk)) return ToGrpcStatus(absl::InvalidArgumentError("no blob was sent"));
    auto writer = library_->OpenBlob(chunk.sha256(), chunk.size(), chunk.offset());
    if (absl::IsAlreadyExists(writer.status())) {
      out->set_size(chunk.size());
      return grpc::Status::OK;
    }
    if (!writer.ok()) return ToGrpcStatus(writer.status());
    do {
      if (chunk.data().size() > static_cast<size_t>(kMessageBytes))
        return ToGrpcStatus(absl::InvalidArgumentError("a chunk carries at most 1 MiB"));
      if (auto s = (*writer)->Append(chunk.data()); !s.ok()) return ToGrpcStatus(s);
    } while (in->Read(&chunk));
    if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
    if (auto s = (*writer)->Finish(); !s.ok()) return ToGrpcStatus(s);
    out->set_size((*writer)->offset());
    return grpc::Status::OK;
  }

  grpc::Status GetBlobStates(grpc::ServerContext* ctx, const v1::BlobStatesRequest* req,
                             v1::BlobStates* out) override {
    if (auto s = Allow(*ctx, {"provider", "site", "dp"}, "content state"); !s.ok())
      return ToGrpcStatus(s);
    if (library_ == nullptr) return ToGrpcStatus(NoLibrary(site_));
    if (req->sha256_size() > kMaxStateQueries)
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("at most ", kMaxStateQueries, " blobs a request")));
    for (const std::string& h : req->sha256()) {
      if (!content::IsSha256Hex(h))
        return ToGrpcStatus(absl::InvalidArgumentError("sha256: not 64 lower-case hex digits"));
      v1::BlobState* b = out->add_blobs();
      b->set_sha256(h);
      b->set_present(library_->HasBlob(h));
      if (!b->present()) {
        b->set_partial_bytes(library_->PartialBytes(h));
      } else if (req->chunks()) {
        if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
        absl::StatusOr<content::BlobRef> list = library_->ChunkList(h);
        if (!list.ok()) return ToGrpcStatus(list.status());
        b->set_chunk_bytes(list->chunk_bytes);
        b->set_chunk_sha256(std::move(list->chunk_sha256));
        b->set_size(list->size);
      }
    }
    return grpc::Status::OK;
  }

 private:
  content::Library* library_;
  const std::string site_;
};

// ---- SiteContent ----------------------------------------------------------

SiteContent::SiteContent(const v1::SiteServerConfig& config, v1::SiteType type)
    : config_(config), type_(type) {}

SiteContent::~SiteContent() { Stop(); }

absl::Status SiteContent::Open() {
  if (!config_.content_library().empty()) {
    auto lib = content::Library::Open(config_.content_library());
    if (!lib.ok()) return Annotate(lib.status(), "content_library");
    library_ = std::move(*lib);
  }
  service_ = std::make_unique<Service>(library_.get(), config_.site_code());
  DpLinkOptions dp;
  dp.site_code = config_.site_code();
  dp.site_type = type_;
  dp.conninfo = config_.database();
  dp.has_library = library_ != nullptr;
  dp.changes = &changes_;
  dp.stopping = &stop_;
  dp_link_ = MakeDpLinkService(std::move(dp));
  return absl::OkStatus();
}

std::vector<grpc::Service*> SiteContent::services() { return {service_.get(), dp_link_.get()}; }

void SiteContent::Start() {
  if (library_ == nullptr) return;
  manager_ = std::thread([this] { ManagerLoop(); });
}

void SiteContent::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (manager_.joinable()) manager_.join();
}

namespace {

struct Written {
  std::string state, error;
  int64_t bytes = -1;
  absl::Time at = absl::InfinitePast();
};

// The content manager's state between passes (one thread).
class Manager {
 public:
  Manager(const v1::SiteServerConfig& config, content::Library& library, absl::Notification& stop)
      : config_(config),
        library_(library),
        stop_(stop),
        limiter_(config.content_from_parent().max_bytes_per_second()),
        link_{config.content_from_parent().max_bytes_per_second(),
              config.content_from_parent().hours()} {
    auto hours = content::TransferHours::Parse(config.content_from_parent().hours());
    if (hours.ok()) hours_ = *hours;
    if (!config.parent_address().empty()) {
      ChannelOptions options;
      auto channel = MakeChannel(config.parent_address(), config.tls(), options);
      if (channel.ok()) parent_ = content::GrpcBlobSource(*channel, "the parent site");
    }
  }

  // One pass: the newest complete version of every package held, older
  // ones released. Returns whether work remains (to look again soon).
  absl::StatusOr<bool> Pass(store::Connection& conn) {
    RETURN_IF_ERROR(ApplyLink(conn));
    ASSIGN_OR_RETURN(std::vector<VersionKey> newest, NewestVersions(conn, ""));
    std::set<VersionKey> wanted(newest.begin(), newest.end());
    // Release what is no longer wanted.
    for (const v1::ContentManifest& m : library_.Versions()) {
      if (wanted.count({m.package(), m.version()}) > 0) continue;
      RETURN_IF_ERROR(library_.RemoveVersion(m.package(), m.version()));
      const VersionKey key{m.package(), m.version()};
      installed_.erase(key);
      written_.erase(key);
      fetched_.erase(key);
      retry_at_.erase(key);
      LogInfo("content.version_released", {{"package", m.package()}, {"version", m.version()}});
    }
    std::vector<std::string> packages;
    std::vector<std::string> versions;
    for (const VersionKey& k : wanted) {
      packages.push_back(k.package);
      versions.push_back(std::to_string(k.version));
    }
    RETURN_IF_ERROR(
        conn.Exec("DELETE FROM content_status WHERE site_code = $1 AND location = "
                  "'site' AND (package, version) NOT IN (SELECT * FROM unnest($2::text[], "
                  "$3::bigint[]))",
                  {config_.site_code(), store::TextArrayLiteral(packages),
                   store::TextArrayLiteral(versions)})
            .status());
    bool pending = false;
    for (const VersionKey& k : wanted) {
      if (stop_.HasBeenNotified()) break;
      // Installed, and the same version row (not one made again since).
      if (auto it = installed_.find(k); it != installed_.end() && it->second == k.stamp) continue;
      if (auto r = retry_at_.find(k); r != retry_at_.end() && absl::Now() < r->second) {
        pending = true;
        continue;
      }
      ASSIGN_OR_RETURN(v1::ContentManifest m, ReadManifest(conn, k));
      if (Bring(conn, m)) {
        installed_[k] = k.stamp;
      } else {
        pending = true;
      }
    }
    return pending;
  }

  absl::Status Validate(store::Connection& conn) {
    ASSIGN_OR_RETURN(std::vector<content::Library::Mismatch> bad, library_.Validate());
    for (const auto& m : bad) {
      const std::string files = absl::StrJoin(m.files, "; ");
      LogWarning("content.blob_corrupt",
                 {{"sha256", m.sha256}, {"found", m.actual}, {"files", files}});
      RETURN_IF_ERROR(
          conn.Exec("INSERT INTO content_validation_failures (site_code, location, sha256, found, "
                    "files, detected_at) VALUES ($1, 'site', $2, $3, $4, now()) ON CONFLICT "
                    "(site_code, location, sha256) DO UPDATE SET found = EXCLUDED.found, files = "
                    "EXCLUDED.files, detected_at = now(), repaired_at = NULL",
                    {config_.site_code(), m.sha256, m.actual, files})
              .status());
    }
    if (!bad.empty()) {  // the next pass brings the good bytes back
      installed_.clear();
      retry_at_.clear();
    }
    LogInfo("content.validated", {{"bad_blobs", static_cast<int64_t>(bad.size())}});
    return absl::OkStatus();
  }

 private:
  // The link from the parent: an admin's content link for this site if there
  // is one, else the configuration's content_from_parent.
  absl::Status ApplyLink(store::Connection& conn) {
    ASSIGN_OR_RETURN(std::optional<LinkLimits> admin, ContentLinkOf(conn, config_.site_code()));
    const LinkLimits want = admin ? *admin
                                  : LinkLimits{config_.content_from_parent().max_bytes_per_second(),
                                               config_.content_from_parent().hours()};
    if (want.max_bytes_per_second == link_.max_bytes_per_second && want.hours == link_.hours)
      return absl::OkStatus();
    auto hours = content::TransferHours::Parse(want.hours);
    link_ = want;  // (a refused one is said once, not every pass)
    if (!hours.ok()) {
      // The provider checks hours; a row that still does not parse leaves
      // the link as it was rather than stopping the content manager.
      LogWarning("content.link_refused", {{"hours", want.hours}, {"error", hours.status()}});
      return absl::OkStatus();
    }
    limiter_.SetRate(want.max_bytes_per_second);
    hours_ = *hours;
    retry_at_.clear();  // what waited for its hours may move now
    LogInfo("content.link_changed", {{"max_bytes_per_second", want.max_bytes_per_second},
                                     {"hours", want.hours},
                                     {"from", admin ? "content link" : "configuration"}});
    return absl::OkStatus();
  }

  // Brings one version in; true once it is installed.
  bool Bring(store::Connection& conn, const v1::ContentManifest& m) {
    const VersionKey key{m.package(), m.version()};
    std::vector<content::BlobRef> missing = library_.Missing(m);
    const int64_t total = content::TotalBytes(content::DistinctBlobs(m));
    absl::Status s;
    if (missing.empty()) {
      s = library_.AddVersion(m);  // held again: its manifest as it is now
    } else if (parent_ == nullptr) {
      s = absl::FailedPreconditionError(
          absl::StrCat(missing.size(), " blobs (", content::TotalBytes(missing),
                       " bytes) are missing at the site that holds the source"));
    } else {
      Record(conn, key, "transferring", total - content::TotalBytes(missing), total, "", true);
      content::CountingSource counting(*parent_);
      s = content::BringVersion(
          m, library_, counting, limiter_, hours_, &stop_, [&](const content::Progress& p) {
            Record(conn, key, "transferring", p.bytes_done, p.bytes_total, "", false);
          });
      fetched_[key] += counting.bytes;
    }
    if (s.ok()) {
      Record(conn, key, "installed", total, total, "", true);
      (void)conn.Exec(
          "UPDATE content_validation_failures SET repaired_at = now() WHERE "
          "site_code = $1 AND location = 'site' AND repaired_at IS NULL AND sha256 = "
          "ANY($2::text[])",
          {config_.site_code(), store::TextArrayLiteral(Hashes(missing))});
      LogInfo(
          "content.version_installed",
          {{"package", m.package()}, {"version", m.version()}, {"bytes_fetched", fetched_[key]}});
      fetched_.erase(key);
      return true;
    }
    if (absl::IsCancelled(s)) return false;
    // The parent not holding it yet, or a link down or out of hours: queued,
    // tried again in a few seconds; anything else: failed, tried again in a
    // minute. Logged when the reason changes.
    const bool waiting = absl::IsNotFound(s) || absl::IsUnavailable(s);
    retry_at_[key] = absl::Now() + (waiting ? absl::Seconds(3) : absl::Minutes(1));
    if (written_[key].error != s.ToString().substr(0, 1024))
      LogWarning("content.version_not_installed",
                 {{"package", m.package()}, {"version", m.version()}, {"error", s}});
    Record(conn, key, waiting ? "queued" : "failed",
           total - content::TotalBytes(library_.Missing(m)), total, s.ToString().substr(0, 1024),
           true);
    return false;
  }

  static std::vector<std::string> Hashes(const std::vector<content::BlobRef>& blobs) {
    std::vector<std::string> out;
    for (const auto& b : blobs) out.push_back(b.sha256);
    return out;
  }

  // Writes this site's state of a version when it changed (progress at
  // most once a second).
  void Record(store::Connection& conn, const VersionKey& k, const std::string& state, int64_t done,
              int64_t total, const std::string& error, bool force) {
    Written& w = written_[k];
    absl::Time now = absl::Now();
    if (w.state == state && w.error == error && w.bytes == done) return;
    if (!force && w.state == state && now - w.at < absl::Seconds(1)) return;
    absl::Status s =
        conn.Exec(kUpsertStatus,
                  {config_.site_code(), "site", k.package, std::to_string(k.version), state,
                   std::to_string(done), std::to_string(total), error.substr(0, 1024)})
            .status();
    if (!s.ok()) {
      LogWarning("content.status_not_written", {{"error", s}});
      return;
    }
    w = {state, error, done, now};
  }

  const v1::SiteServerConfig& config_;
  content::Library& library_;
  absl::Notification& stop_;
  content::RateLimiter limiter_;
  content::TransferHours hours_;
  LinkLimits link_;  // what limiter_ and hours_ hold
  std::unique_ptr<content::BlobSource> parent_;
  std::map<VersionKey, int64_t> installed_;  // -> the version row's stamp
  std::map<VersionKey, Written> written_;
  std::map<VersionKey, int64_t> fetched_;      // bytes taken from the parent, while not installed
  std::map<VersionKey, absl::Time> retry_at_;  // after a failed attempt
};

}  // namespace

void SiteContent::ManagerLoop() {
  Manager manager(config_, *library_, stop_);
  const absl::Duration validate_every = absl::Seconds(
      config_.content_validation_seconds() > 0 ? config_.content_validation_seconds() : 86400);
  absl::Time next_validation = absl::Now() + validate_every;
  absl::Time next_collect = absl::Now() + kCollectEvery;
  store::ConnectionPtr conn;
  while (!stop_.HasBeenNotified()) {
    if (conn == nullptr) {
      auto c = store::Connection::Open(config_.database());
      if (c.ok() && (*c)->Listen("strata_content").ok()) {
        conn = std::move(*c);
      } else {
        stop_.WaitForNotificationWithTimeout(absl::Seconds(1));
        continue;
      }
    }
    absl::StatusOr<bool> pending = manager.Pass(*conn);
    absl::Status s = pending.status();
    bool validate_now = absl::Now() >= next_validation;
    if (s.ok() && !validate_now) {
      auto requested = ValidationRequestedMs(*conn, config_.site_code(), "site");
      validate_now = requested.ok() && *requested > library_->last_validated_ms();
    }
    if (s.ok() && validate_now) {
      s = manager.Validate(*conn);
      next_validation = absl::Now() + validate_every;
      if (s.ok()) pending = true;  // repair at once
    }
    if (s.ok() && absl::Now() >= next_collect) {
      auto collected = library_->Collect(kCollectGrace);
      if (collected.ok() && collected->blobs > 0)
        LogInfo("content.collected", {{"blobs", collected->blobs}, {"bytes", collected->bytes}});
      next_collect = absl::Now() + kCollectEvery;
    }
    if (!s.ok()) {
      LogWarning("content.pass_failed", {{"error", s}});
      conn.reset();
      stop_.WaitForNotificationWithTimeout(absl::Seconds(1));
      continue;
    }
    // Wait for a change (NOTIFY), or look again soon while work remains.
    const int rounds = pending.value_or(false) ? 4 : 20;
    for (int i = 0; i < rounds && !stop_.HasBeenNotified(); ++i) {
      auto n = conn->AwaitNotification(250);
      if (!n.ok()) {
        conn.reset();
        break;
      }
      if (*n > 0) {
        changes_.Bump();
        break;
      }
    }
  }
}

}  // namespace strata::site
