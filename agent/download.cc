#include "agent/download.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/content/download.h"
#include "common/content/hash.h"
#include "common/content/transfer.h"

namespace strata::agent {
namespace {

// Each blob from the first DP that delivers it, resuming at the next where
// one stopped; a DP that failed is not asked again in this download.
class FailoverSource final : public content::BlobSource {
 public:
  FailoverSource(std::vector<std::string> names,
                 std::vector<std::unique_ptr<content::BlobSource>> sources)
      : names_(std::move(names)), sources_(std::move(sources)), bytes_(sources_.size(), 0) {}

  absl::Status Fetch(const content::BlobRef& blob, content::BlobWriter& writer,
                     const std::function<bool(int64_t)>& chunk) override {
    absl::Status last = absl::UnavailableError("no distribution point holds this content");
    for (; current_ < sources_.size(); ++current_) {
      last = sources_[current_]->Fetch(blob, writer, [&](int64_t n) {
        bytes_[current_] += n;
        return chunk(n);
      });
      if (last.ok() || absl::IsCancelled(last)) return last;
      LogWarning("agent.dp_failed", {{"dp", names_[current_]}, {"error", last}});
      // Bytes of a DP that sent bad bytes or the wrong amount are not kept,
      // but for whole chunks that matched their hashes.
      if (absl::IsDataLoss(last)) RETURN_IF_ERROR(writer.DropUnverified());
    }
    return absl::UnavailableError(absl::StrCat("no distribution point could deliver blob ",
                                               blob.sha256, ": ", last.message()));
  }

  // The DP that sent bad bytes is not asked again.
  void Skip() { ++current_; }
  bool exhausted() const { return current_ >= sources_.size(); }
  std::string name() const override {
    return current_ < names_.size() ? names_[current_] : "no DP";
  }
  std::vector<std::string> Used(int64_t* total) const {
    std::vector<std::string> out;
    for (size_t i = 0; i < names_.size(); ++i) {
      *total += bytes_[i];
      if (bytes_[i] > 0) out.push_back(names_[i]);
    }
    return out;
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<content::BlobSource>> sources_;
  std::vector<int64_t> bytes_;
  size_t current_ = 0;
};

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// mkdir -p of `rel`'s parents under `dest`, refusing a symlink on the way.
absl::Status MakeParents(const std::string& dest, const std::string& rel) {
  std::string at = dest;
  std::vector<std::string> parts = absl::StrSplit(rel, '/');
  parts.pop_back();
  for (const std::string& p : parts) {
    at += "/" + p;
    struct stat st;
    if (::lstat(at.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        return absl::FailedPreconditionError(
            absl::StrCat(at, " is in the way (not a folder; symlinks are not followed)"));
      continue;
    }
    if (::mkdir(at.c_str(), 0755) != 0) return Errno("cannot create", at);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CopyOut(content::Library& library, const v1::ContentManifest& manifest,
                     const std::string& dest) {
  RETURN_IF_ERROR(content::CheckManifest(manifest));
  if (::mkdir(dest.c_str(), 0755) != 0 && errno != EEXIST) return Errno("cannot create", dest);
  std::string buf(1 << 20, '\0');
  for (const v1::ContentFile& f : manifest.files()) {
    RETURN_IF_ERROR(MakeParents(dest, f.path()));
    const std::string target = dest + "/" + f.path();
    const std::string tmp = target + ".strata-part";
    const std::string blob = library.BlobPath(f.sha256());
    int in = ::open(blob.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) return Errno("cannot read the cached blob of", f.path());
    int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
      ::close(in);
      return Errno("cannot write", tmp);
    }
    content::Sha256 hash;
    absl::Status s;
    while (s.ok()) {
      ssize_t n = ::read(in, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) s = Errno("cannot read the cached blob of", f.path());
      if (n <= 0) break;
      hash.Update(buf.data(), static_cast<size_t>(n));
      for (ssize_t off = 0; off < n && s.ok();) {
        ssize_t w = ::write(out, buf.data() + off, static_cast<size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) s = Errno("cannot write", tmp);
        off += w > 0 ? w : 0;
      }
    }
    ::close(in);
    if (s.ok() && hash.HexDigest() != f.sha256()) {
      ::unlink(blob.c_str());  // the cache fetches it anew next time
      s = absl::DataLossError(absl::StrCat("the cached bytes of ", f.path(),
                                           " are not what the manifest names: taken out of "
                                           "the cache; download again"));
    }
    if (s.ok() && ::fchmod(out, f.mode() == 0 ? 0644 : f.mode()) != 0)
      s = Errno("cannot set the mode of", tmp);
    ::close(out);
    if (s.ok() && ::rename(tmp.c_str(), target.c_str()) != 0) s = Errno("cannot rename to", target);
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<DownloadResult> Download(ContentCache& cache, const v1::ContentLocation& where,
                                        const DownloadOptions& options) {
  const v1::ContentManifest& m = where.manifest();
  RETURN_IF_ERROR(content::CheckManifest(m));
  const ContentCache::Key key{m.package(), m.version()};
  cache.Pin(key);
  DownloadResult result;
  result.bytes_total = content::TotalBytes(content::DistinctBlobs(m));
  content::Library& lib = cache.library();
  if (!lib.Missing(m).empty() || !lib.HoldsVersion(m.package(), m.version())) {
    RETURN_IF_ERROR(cache.MakeRoom(m));
    std::vector<std::string> names;
    std::vector<std::unique_ptr<content::BlobSource>> sources;
    for (const std::string& dp : where.distribution_points()) {
      auto s = content::HttpsBlobSource(dp, options.tls, dp);
      if (!s.ok()) return s.status();
      names.push_back(dp);
      sources.push_back(std::move(*s));
    }
    FailoverSource failover(std::move(names), std::move(sources));
    content::RateLimiter limiter(options.max_bytes_per_second);
    absl::Status s;
    while (true) {
      s = content::BringVersion(m, lib, failover, limiter, content::TransferHours(), nullptr,
                                [](const content::Progress&) {});
      if (!absl::IsDataLoss(s) || failover.exhausted()) break;
      LogWarning("agent.dp_sent_bad_bytes", {{"dp", failover.name()}, {"error", s}});
      failover.Skip();
    }
    result.dps_used = failover.Used(&result.bytes_downloaded);
    if (!s.ok()) return s;
  }
  RETURN_IF_ERROR(cache.Touch(key));
  if (!options.dest.empty()) RETURN_IF_ERROR(CopyOut(lib, m, options.dest));
  LogInfo("agent.content_downloaded", {{"package", m.package()},
                                       {"version", m.version()},
                                       {"bytes_downloaded", result.bytes_downloaded}});
  return result;
}

}  // namespace strata::agent
