#pragma once

// The agent's content cache: a content library (single instance, every
// blob verified, interrupted downloads resumable) under the state folder,
// bounded in bytes (default 5 GiB) by evicting whole versions least
// recently used first; the versions in use are pinned and never evicted.
// One process at a time holds a cache (an exclusive lock on its folder):
// the agent service and `strata-agent download` take turns.

#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "common/content/library.h"

namespace strata::agent {

inline constexpr int64_t kDefaultCacheBytes = int64_t{5} << 30;

class ContentCache {
 public:
  using Key = std::pair<std::string, int64_t>;  // package, version

  // Opens (creating) the cache at `dir`, waiting for the lock.
  static absl::StatusOr<std::unique_ptr<ContentCache>> Open(const std::string& dir,
                                                            int64_t max_bytes);
  ~ContentCache();

  content::Library& library() { return *library_; }
  int64_t max_bytes() const { return max_bytes_; }

  void Pin(const Key& k) { pinned_.insert(k); }
  void Unpin(const Key& k) { pinned_.erase(k); }
  // Records a use of a held version (for least-recently-used eviction).
  absl::Status Touch(const Key& k);
  // Evicts unpinned versions, least recently used first, until the blobs
  // of `incoming` that are missing fit (those already there, and parts of
  // them, stay); FailedPrecondition if they cannot (pinned content, or more
  // than the whole cache).
  absl::Status MakeRoom(const v1::ContentManifest& incoming);
  // Bytes held (blobs and parts).
  int64_t used_bytes() const;

 private:
  ContentCache(std::string dir, int64_t max_bytes, int lock_fd)
      : dir_(std::move(dir)), max_bytes_(max_bytes), lock_fd_(lock_fd) {}
  std::string LruPath() const { return dir_ + "/lru"; }

  const std::string dir_;
  const int64_t max_bytes_;
  const int lock_fd_;
  std::unique_ptr<content::Library> library_;
  std::set<Key> pinned_;
};

}  // namespace strata::agent
