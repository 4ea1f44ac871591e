#include "agent/content_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/status.h"

namespace strata::agent {
namespace {

// "unix_ms\tversion\tpackage" per line: the last use of each version held.
using Lru = std::map<ContentCache::Key, int64_t>;

Lru ReadLru(const std::string& path) {
  Lru out;
  auto text = ReadFile(path);
  if (!text.ok()) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits('\t', 2));
    int64_t ms = 0, version = 0;
    if (f.size() == 3 && absl::SimpleAtoi(f[0], &ms) && absl::SimpleAtoi(f[1], &version))
      out[{f[2], version}] = ms;
  }
  return out;
}

absl::Status WriteLru(const std::string& path, const Lru& lru) {
  std::string text;
  for (const auto& [k, ms] : lru) absl::StrAppend(&text, ms, "\t", k.second, "\t", k.first, "\n");
  return WriteFileAtomically(path, text, 0600);
}

int64_t FolderBytes(const std::string& dir) {
  int64_t total = 0;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  while (struct dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::lstat((dir + "/" + name).c_str(), &st) != 0) continue;
    total += S_ISDIR(st.st_mode) ? FolderBytes(dir + "/" + name) : st.st_size;
  }
  ::closedir(d);
  return total;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ContentCache>> ContentCache::Open(const std::string& dir,
                                                                 int64_t max_bytes) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", std::strerror(errno)));
  int fd = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("cannot open ", dir, "/lock: ", std::strerror(errno)));
  while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  std::unique_ptr<ContentCache> cache(
      new ContentCache(dir, max_bytes > 0 ? max_bytes : kDefaultCacheBytes, fd));
  // Not synced: copying out re-hashes every file (download.h).
  auto lib = content::Library::Open(dir + "/library", content::Library::Durability::kVerifyOnUse);
  if (!lib.ok()) return lib.status();
  cache->library_ = std::move(*lib);
  return cache;
}

ContentCache::~ContentCache() { ::close(lock_fd_); }  // releases the lock

absl::Status ContentCache::Touch(const Key& k) {
  Lru lru = ReadLru(LruPath());
  lru[k] = absl::ToUnixMillis(absl::Now());
  return WriteLru(LruPath(), lru);
}

int64_t ContentCache::used_bytes() const {
  return FolderBytes(dir_ + "/library/sha256") + FolderBytes(dir_ + "/library/parts");
}

absl::Status ContentCache::MakeRoom(const v1::ContentManifest& manifest) {
  std::set<std::string, std::less<>> keep;
  int64_t incoming = 0;
  for (const content::BlobRef& b : content::DistinctBlobs(manifest)) {
    keep.insert(b.sha256);
    if (!library_->HasBlob(b.sha256)) incoming += b.size - library_->PartialBytes(b.sha256);
  }
  if (content::TotalBytes(content::DistinctBlobs(manifest)) > max_bytes_)
    return absl::FailedPreconditionError(absl::StrCat(
        "the content is ", content::TotalBytes(content::DistinctBlobs(manifest)),
        " bytes, more than the whole cache (", max_bytes_, " bytes: cache_max_bytes)"));
  if (used_bytes() + incoming <= max_bytes_) return absl::OkStatus();
  Lru lru = ReadLru(LruPath());
  std::vector<std::pair<int64_t, Key>> order;
  for (const v1::ContentManifest& m : library_->Versions()) {
    Key k{m.package(), m.version()};
    if (pinned_.count(k) > 0) continue;
    auto it = lru.find(k);
    order.push_back({it == lru.end() ? 0 : it->second, k});
  }
  std::sort(order.begin(), order.end());
  for (const auto& [ms, k] : order) {
    RETURN_IF_ERROR(library_->RemoveVersion(k.first, k.second));
    lru.erase(k);
    LogInfo("agent.cache_evicted", {{"package", k.first}, {"version", k.second}});
    RETURN_IF_ERROR(library_->Collect(absl::ZeroDuration(), keep).status());
    if (used_bytes() + incoming <= max_bytes_) break;
  }
  RETURN_IF_ERROR(WriteLru(LruPath(), lru));
  RETURN_IF_ERROR(library_->Collect(absl::ZeroDuration(), keep).status());
  if (used_bytes() + incoming > max_bytes_)
    return absl::FailedPreconditionError(absl::StrCat("the cache cannot make room for ", incoming,
                                                      " bytes: what it holds is in use"));
  return absl::OkStatus();
}

}  // namespace strata::agent
