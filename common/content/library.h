#pragma once

// A single-instance content library (Configuration Manager's SCCMContentLib):
// content versions (manifests: package, version, files) over blobs named by
// their SHA-256, each stored once however many versions use it and counted
// by the versions that reference it. Site servers and distribution points
// each keep one; nginx serves a DP's blobs straight from it.
//
// On disk, under the root:
//   sha256/ab/ab…   whole, verified blobs (read-only files); nothing else
//                   ever appears here, so a reader never sees a partial blob
//   parts/<hash>    blobs being received; resumable, verified on finishing
//   versions/<id>   manifests of the versions held (written durably)
// A blob is finished by hashing the whole part, fsync, rename into sha256/,
// fsync of the directory: the library survives kill -9 or power loss at any
// point with no corrupt blob visible. A blob nothing references is removed
// by Collect() once older than a grace period (uploads in flight are not
// referenced yet).
//
// Thread-safe. Several processes may share a root only for reading (nginx).

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/content/hash.h"
#include "common/content/manifest.h"
#include "strata/v1/content.pb.h"

namespace strata::content {

class Library;

// Receives one blob into the library. Append bytes in order, then Finish.
// Dropping a writer unfinished keeps the bytes received so far: a later
// OpenBlob resumes after them.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  // InvalidArgument if the bytes would run past the blob's size. With a
  // chunk list, DataLoss if a chunk does not match its hash: the bytes after
  // the last good chunk are dropped and offset() is back at that chunk.
  absl::Status Append(absl::string_view data);
  int64_t offset() const { return offset_; }
  // Bytes known good: whole chunks that matched (0 without a chunk list).
  int64_t verified() const { return verified_; }
  // Throws away the bytes after the last verified chunk (all of them
  // without a chunk list): a source stopped short or sent bad bytes.
  absl::Status DropUnverified();
  // Verifies size and hash, then shows the blob. DataLoss if they are not
  // the blob named: the bytes received are discarded (but for verified
  // chunks).
  absl::Status Finish();

 private:
  friend class Library;
  void Release();  // closes the part and lets another writer open it
  BlobWriter(Library* lib, std::string sha256, int64_t size, int fd, int64_t offset);
  absl::Status Fill(absl::string_view data);
  // Process's share with a chunk list (only checking, for a resumed part).
  absl::Status Verify(const char* p, size_t n, bool write = true);
  absl::Status Resume(int64_t offset);  // re-reads what a part holds
  struct FreeBuffer {
    void operator()(char* p) const { free(p); }
  };
  static std::unique_ptr<char, FreeBuffer> NewBuffer(size_t bytes);  // 4 KiB-aligned
  // Hashes and writes bytes, in order: on the caller's thread, or for a
  // large blob on the worker's (up to kInFlight full buffers queued for it
  // while the next fills, so neither thread waits on the other's bursts).
  absl::Status Process(const char* p, size_t n);
  absl::Status HandOff();   // the buffer is full
  absl::Status FlushAll();  // what the buffer holds, after the worker's
  absl::Status WaitIdle();  // the worker's buffer done; its error, if any
  void WorkerLoop();
  void StopWorker();
  absl::Status Write(const char* p, size_t n);
  Library* lib_;
  Sha256 hash_;  // of the bytes written so far (a resumed part's on opening)
  // With a chunk list, each chunk is verified as it completes instead (no
  // whole hash): hashed_ bytes went through Process, verified_ of them are
  // whole chunks that matched. Without one, verified_ stays 0.
  int64_t chunk_bytes_ = 0;
  std::string chunks_;
  Sha256 chunk_hash_;
  int64_t hashed_ = 0;
  int64_t verified_ = 0;
  std::unique_ptr<char, FreeBuffer> buffer_;  // filling
  size_t capacity_ = 0;                       // of each buffer: 1 MiB, or the blob's size in blocks
  size_t buffered_ = 0;
  bool direct_ = false;  // the part is written with O_DIRECT
  using Buffer = std::unique_ptr<char, FreeBuffer>;
  int allocated_ = 0;  // buffers made besides buffer_, at most kInFlight
  std::thread worker_;
  absl::Mutex worker_mu_;
  std::deque<Buffer> queue_ ABSL_GUARDED_BY(worker_mu_);  // full, in order, for the worker
  std::vector<Buffer> free_ ABSL_GUARDED_BY(worker_mu_);  // done with, to fill again
  bool busy_ ABSL_GUARDED_BY(worker_mu_) = false;         // the worker holds one
  bool quit_ ABSL_GUARDED_BY(worker_mu_) = false;
  absl::Status worker_status_ ABSL_GUARDED_BY(worker_mu_);
  std::string sha256_;
  int64_t size_;
  int fd_;
  int64_t offset_;
};

class Library {
 public:
  // How blobs are made durable. kSynced: fsync before a blob is shown (site
  // servers, DPs: what they hold is the source for others). kVerifyOnUse:
  // no fsync; after a power loss a blob may be shown with wrong bytes, so
  // its user re-hashes it before use (the agent's cache copies out with a
  // hash check and drops a bad blob), and downloads do not wait for disks.
  // Either way parts are written with O_DIRECT where the filesystem allows:
  // a transfer does not go through, and crowd, the page cache (whose
  // writeback throttling made buffered writes 3x slower here).
  enum class Durability { kSynced, kVerifyOnUse };

  // Opens the library at `root`, creating it. Reads the manifests held.
  static absl::StatusOr<std::unique_ptr<Library>> Open(const std::string& root,
                                                       Durability durability = Durability::kSynced);

  const std::string& root() const { return root_; }
  std::string BlobPath(absl::string_view sha256) const;
  bool HasBlob(absl::string_view sha256) const;
  // Bytes received so far of a blob not yet whole (0 if none).
  int64_t PartialBytes(absl::string_view sha256) const;

  // Starts or resumes receiving a blob of `size` bytes. `offset` must be 0
  // (start over) or the bytes already received (resume); otherwise
  // FailedPrecondition saying where to resume. AlreadyExists if the library
  // already holds the blob.
  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenBlob(absl::string_view sha256, int64_t size,
                                                       int64_t offset);
  // The same with the blob's chunk list, if it has one: each chunk is then
  // verified as it arrives, and a resumed part's chunks are checked again
  // (the writer's offset() is the end of the last good one).
  absl::StatusOr<std::unique_ptr<BlobWriter>> OpenBlob(const BlobRef& blob, int64_t offset);

  // The chunk list of a blob the library holds (ChunkBytes(size) each; an
  // empty list for a blob of one chunk): from a held version's manifest, or
  // else by reading the blob, whose whole hash is checked on the way
  // (DataLoss if the bytes on disk are no longer the blob).
  absl::StatusOr<BlobRef> ChunkList(absl::string_view sha256) const;
  // A whole blob at once (small blobs, tests).
  absl::Status PutBlob(absl::string_view sha256, absl::string_view data);

  // The blobs of `manifest` the library does not hold.
  std::vector<BlobRef> Missing(const v1::ContentManifest& manifest) const;
  // Holds a version: every blob must be present (FailedPrecondition saying
  // how many are missing). Holding it again replaces its manifest.
  absl::Status AddVersion(const v1::ContentManifest& manifest);
  // Releases a version; its blobs go at the next Collect() if nothing else
  // references them. NotFound if it is not held.
  absl::Status RemoveVersion(const std::string& package, int64_t version);
  bool HoldsVersion(const std::string& package, int64_t version) const;
  // Holds this very manifest (a package made again under its name restarts
  // at version 1 with other files).
  bool HoldsExactly(const v1::ContentManifest& manifest) const;
  std::vector<v1::ContentManifest> Versions() const;
  int References(absl::string_view sha256) const;

  struct Collected {
    int blobs = 0;
    int64_t bytes = 0;
    int parts = 0;
  };
  // Removes blobs no version references and parts untouched, both older
  // than `grace`, but for those named in `keep` (a download under way).
  absl::StatusOr<Collected> Collect(absl::Duration grace,
                                    const std::set<std::string, std::less<>>& keep = {});

  // Re-hashes every blob a held version references. A blob whose bytes are
  // not its name is reported with the files that use it and removed from
  // the library (so it is fetched again).
  struct Mismatch {
    std::string sha256;
    std::string actual;              // the hash of what was on disk, or "missing"
    std::vector<std::string> files;  // "package version N: path"
  };
  absl::StatusOr<std::vector<Mismatch>> Validate();
  // When Validate() last finished (Unix ms, kept across restarts; 0: never).
  int64_t last_validated_ms() const;

  struct Usage {
    int64_t blobs = 0;
    int64_t bytes = 0;
  };
  Usage usage() const;

 private:
  friend class BlobWriter;
  Library(std::string root, Durability d) : root_(std::move(root)), durability_(d) {}
  absl::Status Load();
  std::string PartPath(absl::string_view sha256) const;
  std::string VersionPath(const std::string& package, int64_t version) const;
  absl::Status Publish(const std::string& sha256, int64_t size, int fd);
  void Count(const v1::ContentManifest& m, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string root_;
  const Durability durability_;
  mutable absl::Mutex mu_;
  // (package, version) -> manifest
  std::map<std::pair<std::string, int64_t>, v1::ContentManifest> versions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int, std::less<>> refs_ ABSL_GUARDED_BY(mu_);
  // Blobs being received: one writer each.
  std::set<std::string, std::less<>> writing_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strata::content
