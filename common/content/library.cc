#include "common/content/library.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/base/status.h"

namespace strata::content {
namespace {

constexpr size_t kWriteBuffer = 1 << 20;
constexpr size_t kBlock = 4096;  // O_DIRECT's alignment
// Blobs this large are hashed and written on a thread of their own, with
// up to this many full buffers queued for it.
constexpr int64_t kPipelineBytes = 8 << 20;
constexpr int kInFlight = 8;

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    return Errno("cannot create folder", path);
  return absl::OkStatus();
}

void SyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(std::move(name));
  }
  ::closedir(d);
  return out;
}

std::string VersionName(const v1::ContentManifest& m) {
  return absl::StrCat(m.package(), " version ", m.version());
}

}  // namespace

// ---- BlobWriter -----------------------------------------------------------

BlobWriter::~BlobWriter() {
  if (fd_ >= 0) {
    (void)FlushAll();  // what arrived stays for a resume
    Release();
  }
  StopWorker();
}

void BlobWriter::Release() {
  ::close(fd_);
  fd_ = -1;
  absl::MutexLock lock(&lib_->mu_);
  lib_->writing_.erase(sha256_);
}

BlobWriter::BlobWriter(Library* lib, std::string sha256, int64_t size, int fd, int64_t offset)
    : lib_(lib), sha256_(std::move(sha256)), size_(size), fd_(fd), offset_(offset) {
  // A small blob needs no more than its size (in whole blocks).
  capacity_ = static_cast<size_t>(std::min<int64_t>(
      kWriteBuffer, std::max<int64_t>(kBlock, (size + kBlock - 1) / kBlock * kBlock)));
  buffer_ = NewBuffer(capacity_);
}

std::unique_ptr<char, BlobWriter::FreeBuffer> BlobWriter::NewBuffer(size_t bytes) {
  void* p = nullptr;
  if (::posix_memalign(&p, kBlock, bytes) != 0) p = std::malloc(bytes);
  return std::unique_ptr<char, FreeBuffer>(static_cast<char*>(p));
}

absl::Status BlobWriter::Append(absl::string_view data) {
  if (fd_ < 0) return absl::FailedPreconditionError("blob writer already finished");
  if (static_cast<int64_t>(data.size()) > size_ - offset_)
    return absl::InvalidArgumentError(
        absl::StrCat("blob ", sha256_, ": more bytes than its size ", size_));
  absl::Status s = Fill(data);
  if (absl::IsDataLoss(s)) RETURN_IF_ERROR(DropUnverified());
  return s;
}

absl::Status BlobWriter::Fill(absl::string_view data) {
  offset_ += static_cast<int64_t>(data.size());
  while (!data.empty()) {
    const size_t n = std::min(data.size(), capacity_ - buffered_);
    std::memcpy(buffer_.get() + buffered_, data.data(), n);
    buffered_ += n;
    data.remove_prefix(n);
    if (buffered_ == capacity_) RETURN_IF_ERROR(HandOff());
  }
  return absl::OkStatus();
}

absl::Status BlobWriter::Process(const char* p, size_t n) {
  if (!chunks_.empty()) return Verify(p, n);
  hash_.Update(p, n);
  return Write(p, n);
}

absl::Status BlobWriter::Verify(const char* p, size_t n, bool write) {
  // Piece by piece up to each chunk's end: a chunk's last piece is written
  // only once the chunk matched, so the part never holds a bad whole chunk.
  while (n > 0) {
    const int64_t index = hashed_ / chunk_bytes_;
    const int64_t end = std::min(size_, (index + 1) * chunk_bytes_);
    const size_t take =
        static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(n), end - hashed_));
    chunk_hash_.Update(p, take);
    hashed_ += static_cast<int64_t>(take);
    if (hashed_ == end) {
      const std::string got = chunk_hash_.HexDigest();
      chunk_hash_ = Sha256();
      if (got != absl::string_view(chunks_).substr(static_cast<size_t>(index) * 64, 64))
        return absl::DataLossError(absl::StrCat(
            "blob ", sha256_, ": chunk ", index + 1, " of ", ChunkCount(size_, chunk_bytes_),
            " (bytes ", index * chunk_bytes_, "-", end - 1, ") does not match its hash"));
    }
    if (write) RETURN_IF_ERROR(Write(p, take));
    if (hashed_ == end) verified_ = end;
    p += take;
    n -= take;
  }
  return absl::OkStatus();
}

absl::Status BlobWriter::HandOff() {
  if (size_ < kPipelineBytes) {
    absl::Status s = Process(buffer_.get(), buffered_);
    buffered_ = 0;
    return s;
  }
  // A large blob: the buffer is queued for the worker, which hashes and
  // writes it while the source's receive fills the next.
  Buffer next;
  {
    absl::MutexLock lock(&worker_mu_);
    if (free_.empty() && allocated_ >= kInFlight) {
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(worker_mu_) {
        return !free_.empty() || !worker_status_.ok();
      };
      worker_mu_.Await(absl::Condition(&ready));
    }
    if (!worker_status_.ok()) return worker_status_;
    if (!free_.empty()) {
      next = std::move(free_.back());
      free_.pop_back();
    }
    queue_.push_back(std::move(buffer_));
  }
  if (!next) {
    next = NewBuffer(capacity_);
    ++allocated_;
  }
  buffer_ = std::move(next);
  buffered_ = 0;
  if (!worker_.joinable()) worker_ = std::thread([this] { WorkerLoop(); });
  return absl::OkStatus();
}

void BlobWriter::WorkerLoop() {
  while (true) {
    Buffer b;
    bool failed;
    {
      absl::MutexLock lock(&worker_mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(worker_mu_) {
        return !queue_.empty() || quit_;
      };
      worker_mu_.Await(absl::Condition(&woken));
      if (queue_.empty()) return;  // quit with nothing to do
      b = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      failed = !worker_status_.ok();  // after an error the rest is dropped
    }
    absl::Status s = failed ? absl::OkStatus() : Process(b.get(), capacity_);
    absl::MutexLock lock(&worker_mu_);
    if (!s.ok() && worker_status_.ok()) worker_status_ = s;
    free_.push_back(std::move(b));
    busy_ = false;
  }
}

absl::Status BlobWriter::WaitIdle() {
  absl::MutexLock lock(&worker_mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(worker_mu_) { return queue_.empty() && !busy_; };
  worker_mu_.Await(absl::Condition(&idle));
  return worker_status_;
}

void BlobWriter::StopWorker() {
  if (!worker_.joinable()) return;
  {
    absl::MutexLock lock(&worker_mu_);
    quit_ = true;
  }
  worker_.join();
}

absl::Status BlobWriter::Write(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && direct_ && errno == EINVAL) {
      // The filesystem refuses this direct write: go on through the cache.
      ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_DIRECT);
      direct_ = false;
      continue;
    }
    if (w <= 0) return Errno("cannot write", lib_->PartPath(sha256_));
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status BlobWriter::FlushAll() {
  RETURN_IF_ERROR(WaitIdle());
  // With O_DIRECT, whole blocks that way; the tail through the cache.
  const size_t n = direct_ ? buffered_ / kBlock * kBlock : buffered_;
  if (n > 0) RETURN_IF_ERROR(Process(buffer_.get(), n));
  if (buffered_ > n) {
    if (direct_) {
      ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_DIRECT);
      direct_ = false;
    }
    RETURN_IF_ERROR(Process(buffer_.get() + n, buffered_ - n));
  }
  buffered_ = 0;
  return absl::OkStatus();
}

absl::Status BlobWriter::DropUnverified() {
  if (fd_ < 0) return absl::FailedPreconditionError("blob writer already finished");
  {
    absl::MutexLock lock(&worker_mu_);
    auto idle = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(worker_mu_) { return queue_.empty() && !busy_; };
    worker_mu_.Await(absl::Condition(&idle));
    worker_status_ = absl::OkStatus();  // the error being dropped with its bytes
  }
  buffered_ = 0;
  if (::ftruncate(fd_, verified_) != 0 || ::lseek(fd_, verified_, SEEK_SET) != verified_)
    return Errno("cannot truncate", lib_->PartPath(sha256_));
  hash_ = Sha256();
  chunk_hash_ = Sha256();
  offset_ = hashed_ = verified_;
  if (!direct_ && verified_ % kBlock == 0 &&
      ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_DIRECT) == 0)
    direct_ = true;
  return absl::OkStatus();
}

absl::Status BlobWriter::Finish() {
  if (fd_ < 0) return absl::FailedPreconditionError("blob writer already finished");
  if (offset_ != size_)
    return absl::InvalidArgumentError(
        absl::StrCat("blob ", sha256_, ": ", offset_, " of ", size_, " bytes received"));
  const std::string part = lib_->PartPath(sha256_);
  absl::Status flushed = FlushAll();
  if (absl::IsDataLoss(flushed)) (void)DropUnverified();  // the good chunks stay for a resume
  StopWorker();
  if (!flushed.ok()) {
    Release();
    return flushed;
  }
  std::string actual = chunks_.empty() ? hash_.HexDigest() : sha256_;
  if (!chunks_.empty() && verified_ != size_)
    return absl::InternalError(absl::StrCat("blob ", sha256_, ": ", verified_, " of ", size_,
                                            " bytes verified at the end"));
  if (actual != sha256_) {
    ::unlink(part.c_str());
    Release();
    return absl::DataLossError(
        absl::StrCat("blob ", sha256_, ": the bytes received hash to ", actual));
  }
  absl::Status s = lib_->Publish(sha256_, size_, fd_);
  Release();
  return s;
}

// ---- Library --------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Library>> Library::Open(const std::string& root,
                                                       Durability durability) {
  if (root.empty()) return absl::InvalidArgumentError("content library: no folder given");
  std::unique_ptr<Library> lib(new Library(root, durability));
  RETURN_IF_ERROR(MakeDir(root));
  for (const char* sub : {"/sha256", "/parts", "/versions"}) RETURN_IF_ERROR(MakeDir(root + sub));
  RETURN_IF_ERROR(lib->Load());
  return lib;
}

absl::Status Library::Load() {
  absl::MutexLock lock(&mu_);
  const std::string dir = root_ + "/versions";
  for (const std::string& name : ListDir(dir)) {
    const std::string path = dir + "/" + name;
    if (name.size() < 3 || name.substr(name.size() - 3) != ".pb") {
      ::unlink(path.c_str());  // a temporary file of an interrupted write
      continue;
    }
    absl::StatusOr<std::string> bytes = ReadFile(path);
    v1::ContentManifest m;
    if (!bytes.ok() || !m.ParseFromString(*bytes) || !CheckManifest(m).ok() ||
        VersionPath(m.package(), m.version()) != path) {
      // Written durably, so only a damaged disk gets here: the version is
      // fetched again by whoever wants it.
      LogWarning("content.manifest_unreadable", {{"path", path}});
      ::unlink(path.c_str());
      continue;
    }
    Count(m, +1);
    versions_.emplace(std::make_pair(m.package(), m.version()), std::move(m));
  }
  return absl::OkStatus();
}

std::string Library::BlobPath(absl::string_view sha256) const {
  return absl::StrCat(root_, "/sha256/", sha256.substr(0, 2), "/", sha256);
}

std::string Library::PartPath(absl::string_view sha256) const {
  return absl::StrCat(root_, "/parts/", sha256);
}

std::string Library::VersionPath(const std::string& package, int64_t version) const {
  return absl::StrCat(root_, "/versions/", Sha256::Of(absl::StrCat(package, "\n", version)), ".pb");
}

bool Library::HasBlob(absl::string_view sha256) const {
  if (!IsSha256Hex(sha256)) return false;
  struct stat st;
  return ::stat(BlobPath(sha256).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t Library::PartialBytes(absl::string_view sha256) const {
  if (!IsSha256Hex(sha256)) return 0;
  struct stat st;
  if (::stat(PartPath(sha256).c_str(), &st) != 0) return 0;
  return st.st_size;
}

absl::StatusOr<std::unique_ptr<BlobWriter>> Library::OpenBlob(absl::string_view sha256,
                                                              int64_t size, int64_t offset) {
  return OpenBlob(BlobRef{std::string(sha256), size, 0, ""}, offset);
}

absl::StatusOr<std::unique_ptr<BlobWriter>> Library::OpenBlob(const BlobRef& blob, int64_t offset) {
  const absl::string_view sha256 = blob.sha256;
  const int64_t size = blob.size;
  if (!blob.chunk_sha256.empty() &&
      (blob.chunk_bytes < kMinChunkBytes || blob.chunk_bytes % kBlock != 0 ||
       static_cast<int64_t>(blob.chunk_sha256.size()) != 64 * ChunkCount(size, blob.chunk_bytes)))
    return absl::InvalidArgumentError(
        absl::StrCat("blob ", sha256, ": its chunk list does not fit its size"));
  if (!IsSha256Hex(sha256))
    return absl::InvalidArgumentError("blob name: not 64 lower-case hex digits");
  if (size < 0 || size > kMaxFileBytes)
    return absl::InvalidArgumentError(
        absl::StrCat("blob ", sha256, ": size ", size, " is outside 0 .. 1 TiB"));
  if (offset < 0 || offset > size)
    return absl::InvalidArgumentError(
        absl::StrCat("blob ", sha256, ": offset ", offset, " is outside its size ", size));
  const std::string hash(sha256);
  {
    absl::MutexLock lock(&mu_);
    if (writing_.count(hash) > 0)
      return absl::UnavailableError(
          absl::StrCat("blob ", hash, " is being received by another transfer"));
    if (HasBlob(hash))
      return absl::AlreadyExistsError(absl::StrCat("the library holds blob ", hash));
    writing_.insert(hash);
  }
  const std::string part = PartPath(hash);
  int64_t have = PartialBytes(hash);
  if (offset != 0 && offset != have) {
    absl::MutexLock lock(&mu_);
    writing_.erase(hash);
    return absl::FailedPreconditionError(
        absl::StrCat("blob ", hash, ": resume at byte ", have, ", not ", offset));
  }
  int flags = O_RDWR | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0);
  int fd = ::open(part.c_str(), flags, 0644);
  if (fd < 0) {
    absl::Status s = Errno("cannot open", part);
    absl::MutexLock lock(&mu_);
    writing_.erase(hash);
    return s;
  }
  std::unique_ptr<BlobWriter> w(new BlobWriter(this, hash, size, fd, 0));
  if (!blob.chunk_sha256.empty()) {
    w->chunk_bytes_ = blob.chunk_bytes;
    w->chunks_ = blob.chunk_sha256;
  }
  if (offset > 0) RETURN_IF_ERROR(w->Resume(offset));
  if (::lseek(fd, w->offset_, SEEK_SET) != w->offset_) return Errno("cannot seek in", part);
  if (w->offset_ % kBlock == 0 && ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_DIRECT) == 0)
    w->direct_ = true;
  return w;
}

absl::Status BlobWriter::Resume(int64_t offset) {
  // The bytes received before count towards the hash: read them once. With
  // a chunk list, each whole chunk is checked again (a part is not synced,
  // so a crash may have left anything in it) and the part is cut at the
  // first bad one.
  std::unique_ptr<char[]> buf(new char[1 << 20]);
  const std::string part = lib_->PartPath(sha256_);
  for (int64_t done = 0; done < offset;) {
    ssize_t n = ::pread(fd_, buf.get(), std::min<int64_t>(1 << 20, offset - done), done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("cannot read", part);
    done += n;
    if (chunks_.empty()) {
      hash_.Update(buf.get(), static_cast<size_t>(n));
      continue;
    }
    absl::Status s = Verify(buf.get(), static_cast<size_t>(n), /*write=*/false);
    if (absl::IsDataLoss(s)) {
      LogWarning("content.part_damaged", {{"blob", sha256_}, {"error", s}});
      offset_ = verified_;
      return DropUnverified();
    }
    RETURN_IF_ERROR(s);
  }
  offset_ = offset;
  return absl::OkStatus();
}

absl::Status Library::PutBlob(absl::string_view sha256, absl::string_view data) {
  auto w = OpenBlob(sha256, static_cast<int64_t>(data.size()), 0);
  if (absl::IsAlreadyExists(w.status())) return absl::OkStatus();
  if (!w.ok()) return w.status();
  RETURN_IF_ERROR((*w)->Append(data));
  return (*w)->Finish();
}

absl::Status Library::Publish(const std::string& sha256, int64_t size, int fd) {
  const std::string part = PartPath(sha256);
  if (durability_ == Durability::kSynced && ::fsync(fd) != 0) return Errno("cannot sync", part);
  if (::fchmod(fd, 0444) != 0) return Errno("cannot make read-only", part);
  const std::string dir = absl::StrCat(root_, "/sha256/", sha256.substr(0, 2));
  RETURN_IF_ERROR(MakeDir(dir));
  const std::string final_path = BlobPath(sha256);
  if (std::rename(part.c_str(), final_path.c_str()) != 0)
    return Errno("cannot rename to", final_path);
  SyncDir(dir);
  return absl::OkStatus();
}

std::vector<BlobRef> Library::Missing(const v1::ContentManifest& manifest) const {
  std::vector<BlobRef> out;
  for (BlobRef& b : DistinctBlobs(manifest))
    if (!HasBlob(b.sha256)) out.push_back(std::move(b));
  return out;
}

void Library::Count(const v1::ContentManifest& m, int delta) {
  for (const BlobRef& b : DistinctBlobs(m)) {
    int& n = refs_[b.sha256];
    n += delta;
    if (n <= 0) refs_.erase(b.sha256);
  }
}

absl::Status Library::AddVersion(const v1::ContentManifest& manifest) {
  RETURN_IF_ERROR(CheckManifest(manifest));
  absl::MutexLock lock(&mu_);  // Collect() cannot remove a blob between the check and the count
  std::vector<BlobRef> missing = Missing(manifest);
  if (!missing.empty())
    return absl::FailedPreconditionError(absl::StrCat(VersionName(manifest), ": ", missing.size(),
                                                      " of its blobs (", TotalBytes(missing),
                                                      " bytes) are not in the library"));
  RETURN_IF_ERROR(WriteFileDurably(VersionPath(manifest.package(), manifest.version()),
                                   manifest.SerializeAsString(), 0644));
  auto key = std::make_pair(manifest.package(), manifest.version());
  auto it = versions_.find(key);
  if (it != versions_.end()) {
    Count(it->second, -1);
    it->second = manifest;
  } else {
    versions_.emplace(key, manifest);
  }
  Count(manifest, +1);
  return absl::OkStatus();
}

absl::Status Library::RemoveVersion(const std::string& package, int64_t version) {
  absl::MutexLock lock(&mu_);
  auto it = versions_.find(std::make_pair(package, version));
  if (it == versions_.end())
    return absl::NotFoundError(
        absl::StrCat("the library does not hold ", package, " version ", version));
  const std::string path = VersionPath(package, version);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("cannot remove", path);
  SyncDir(root_ + "/versions");
  Count(it->second, -1);
  versions_.erase(it);
  return absl::OkStatus();
}

bool Library::HoldsVersion(const std::string& package, int64_t version) const {
  absl::MutexLock lock(&mu_);
  return versions_.count(std::make_pair(package, version)) > 0;
}

bool Library::HoldsExactly(const v1::ContentManifest& manifest) const {
  absl::MutexLock lock(&mu_);
  auto it = versions_.find(std::make_pair(manifest.package(), manifest.version()));
  return it != versions_.end() && it->second.SerializeAsString() == manifest.SerializeAsString();
}

std::vector<v1::ContentManifest> Library::Versions() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::ContentManifest> out;
  for (const auto& [key, m] : versions_) out.push_back(m);
  return out;
}

int Library::References(absl::string_view sha256) const {
  absl::MutexLock lock(&mu_);
  auto it = refs_.find(sha256);
  return it == refs_.end() ? 0 : it->second;
}

absl::StatusOr<Library::Collected> Library::Collect(
    absl::Duration grace, const std::set<std::string, std::less<>>& keep) {
  Collected out;
  const time_t cutoff = absl::ToTimeT(absl::Now() - grace);
  absl::MutexLock lock(&mu_);
  const std::string blobs = root_ + "/sha256";
  for (const std::string& fan : ListDir(blobs)) {
    const std::string dir = blobs + "/" + fan;
    for (const std::string& name : ListDir(dir)) {
      if (refs_.count(name) > 0 || keep.count(name) > 0) continue;
      const std::string path = dir + "/" + name;
      struct stat st;
      if (::stat(path.c_str(), &st) != 0 || st.st_mtime > cutoff) continue;
      if (::unlink(path.c_str()) != 0) return Errno("cannot remove", path);
      ++out.blobs;
      out.bytes += st.st_size;
    }
  }
  const std::string parts = root_ + "/parts";
  for (const std::string& name : ListDir(parts)) {
    if (writing_.count(name) > 0 || keep.count(name) > 0) continue;
    const std::string path = parts + "/" + name;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || st.st_mtime > cutoff) continue;
    if (::unlink(path.c_str()) == 0) ++out.parts;
  }
  return out;
}

absl::StatusOr<std::vector<Library::Mismatch>> Library::Validate() {
  std::map<std::string, std::vector<std::string>> users;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, m] : versions_)
      for (const v1::ContentFile& f : m.files())
        users[f.sha256()].push_back(absl::StrCat(VersionName(m), ": ", f.path()));
  }
  std::vector<Mismatch> out;
  for (auto& [hash, files] : users) {
    const std::string path = BlobPath(hash);
    absl::StatusOr<FileDigest> d = HashFile(path);
    if (d.ok() && d->sha256 == hash) continue;
    if (!d.ok() && !absl::IsNotFound(d.status())) return d.status();
    Mismatch m;
    m.sha256 = hash;
    m.actual = d.ok() ? d->sha256 : "missing";
    m.files = std::move(files);
    if (d.ok() && ::unlink(path.c_str()) != 0 && errno != ENOENT)
      return Errno("cannot remove", path);
    out.push_back(std::move(m));
  }
  RETURN_IF_ERROR(WriteFileDurably(root_ + "/validated_ms",
                                   std::to_string(absl::ToUnixMillis(absl::Now())), 0644));
  return out;
}

absl::StatusOr<BlobRef> Library::ChunkList(absl::string_view sha256) const {
  if (!IsSha256Hex(sha256))
    return absl::InvalidArgumentError("blob name: not 64 lower-case hex digits");
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, m] : versions_)
      for (const v1::ContentFile& f : m.files())
        if (f.sha256() == sha256 && !f.chunk_sha256().empty())
          return BlobRef{f.sha256(), f.size(), f.chunk_bytes(), f.chunk_sha256()};
  }
  const std::string path = BlobPath(sha256);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("the library does not hold blob ", sha256));
    return Errno("cannot read", path);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Errno("cannot read", path);
  }
  BlobRef out{std::string(sha256), st.st_size, ChunkBytes(st.st_size), ""};
  Sha256 whole, chunk;
  std::unique_ptr<char[]> buf(new char[1 << 20]);
  int64_t done = 0;
  while (done < out.size) {
    const int64_t chunk_end =
        out.chunk_bytes > 0 ? std::min(out.size, (done / out.chunk_bytes + 1) * out.chunk_bytes)
                            : out.size;
    ssize_t n =
        ::read(fd, buf.get(), static_cast<size_t>(std::min<int64_t>(1 << 20, chunk_end - done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Errno("cannot read", path);
    }
    whole.Update(buf.get(), static_cast<size_t>(n));
    if (out.chunk_bytes > 0) chunk.Update(buf.get(), static_cast<size_t>(n));
    done += n;
    if (out.chunk_bytes > 0 && done == chunk_end) {
      out.chunk_sha256 += chunk.HexDigest();
      chunk = Sha256();
    }
  }
  ::close(fd);
  if (whole.HexDigest() != sha256)
    return absl::DataLossError(absl::StrCat("blob ", sha256, " in the content library at ", root_,
                                            " is damaged (its bytes hash otherwise): validate "
                                            "the content"));
  return out;
}

int64_t Library::last_validated_ms() const {
  absl::StatusOr<std::string> text = ReadFile(root_ + "/validated_ms");
  int64_t ms = 0;
  if (text.ok() && absl::SimpleAtoi(*text, &ms)) return ms;
  return 0;
}

Library::Usage Library::usage() const {
  Usage u;
  const std::string blobs = root_ + "/sha256";
  for (const std::string& fan : ListDir(blobs))
    for (const std::string& name : ListDir(blobs + "/" + fan)) {
      struct stat st;
      if (::stat((blobs + "/" + fan + "/" + name).c_str(), &st) != 0) continue;
      ++u.blobs;
      u.bytes += st.st_size;
    }
  return u;
}

}  // namespace strata::content
