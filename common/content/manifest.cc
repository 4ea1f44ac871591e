#include "common/content/manifest.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"
#include "common/content/hash.h"

namespace strata::content {
namespace {

absl::Status BadPath(absl::string_view path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("file path \"", path.substr(0, 200), "\": ", why));
}

absl::Status CheckChunks(const v1::ContentFile& f) {
  if (f.chunk_bytes() == 0 && f.chunk_sha256().empty()) return absl::OkStatus();
  if (f.chunk_bytes() < kMinChunkBytes || f.chunk_bytes() % 4096 != 0)
    return BadPath(f.path(), absl::StrCat("chunk size ", f.chunk_bytes(),
                                          " is not a multiple of 4 KiB of at least 1 MiB"));
  const int64_t n = ChunkCount(f.size(), f.chunk_bytes());
  if (n < 2 || n > kMaxChunks)
    return BadPath(f.path(),
                   absl::StrCat("a chunk list needs 2 .. ", kMaxChunks, " chunks, not ", n));
  if (static_cast<int64_t>(f.chunk_sha256().size()) != 64 * n)
    return BadPath(f.path(), absl::StrCat("the chunk list holds ", f.chunk_sha256().size() / 64,
                                          " hashes for ", n, " chunks"));
  for (int64_t i = 0; i < n; ++i)
    if (!IsSha256Hex(absl::string_view(f.chunk_sha256()).substr(static_cast<size_t>(i) * 64, 64)))
      return BadPath(f.path(), "a chunk hash is not 64 lower-case hex digits");
  return absl::OkStatus();
}

}  // namespace

int64_t ChunkBytes(int64_t size) {
  int64_t chunk = int64_t{16} << 20;
  if (size <= chunk) return 0;
  while (ChunkCount(size, chunk) > 1024) chunk *= 2;
  return chunk;
}

int64_t ChunkCount(int64_t size, int64_t chunk_bytes) {
  return chunk_bytes <= 0 ? 0 : (size + chunk_bytes - 1) / chunk_bytes;
}

absl::Status CheckRelativePath(absl::string_view path) {
  if (path.empty()) return BadPath(path, "empty");
  if (path.size() > kMaxPathBytes)
    return BadPath(path, absl::StrCat("longer than ", kMaxPathBytes, " bytes"));
  if (path.front() == '/') return BadPath(path, "absolute (must be relative to the package)");
  for (char c : path)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return BadPath(path, "contains a control character");
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty()) return BadPath(path, "has an empty part (\"//\" or a trailing '/')");
    if (part == "." || part == "..") return BadPath(path, "has a \".\" or \"..\" part");
    if (part.size() > kMaxPathPartBytes)
      return BadPath(path, absl::StrCat("has a part longer than ", kMaxPathPartBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckManifest(const v1::ContentManifest& manifest) {
  if (manifest.files_size() > kMaxFiles)
    return absl::InvalidArgumentError(absl::StrCat("a content version holds at most ", kMaxFiles,
                                                   " files, this one ", manifest.files_size()));
  std::set<absl::string_view> paths;
  std::map<absl::string_view, const v1::ContentFile*> blobs;
  for (const v1::ContentFile& f : manifest.files()) {
    RETURN_IF_ERROR(CheckRelativePath(f.path()));
    if (f.size() < 0 || f.size() > kMaxFileBytes)
      return BadPath(f.path(), absl::StrCat("size ", f.size(), " is outside 0 .. 1 TiB"));
    if (f.mode() > 0777) return BadPath(f.path(), "mode is beyond 0777");
    if (!IsSha256Hex(f.sha256()))
      return BadPath(f.path(), "sha256 is not 64 lower-case hex digits");
    if (!paths.insert(f.path()).second) return BadPath(f.path(), "appears twice");
    RETURN_IF_ERROR(CheckChunks(f));
    auto [it, fresh] = blobs.emplace(f.sha256(), &f);
    if (!fresh && (it->second->size() != f.size() || it->second->chunk_bytes() != f.chunk_bytes() ||
                   it->second->chunk_sha256() != f.chunk_sha256()))
      return BadPath(f.path(), absl::StrCat("has the hash of \"", it->second->path(),
                                            "\" but another size or chunk list"));
  }
  // A file may not also be a folder of another: "a" and "a/b".
  for (absl::string_view p : paths) {
    auto next = paths.upper_bound(p);
    if (next != paths.end() && next->size() > p.size() && next->substr(0, p.size()) == p &&
        (*next)[p.size()] == '/')
      return BadPath(*next, absl::StrCat("lies inside the file \"", p, "\""));
  }
  return absl::OkStatus();
}

std::vector<BlobRef> DistinctBlobs(const v1::ContentManifest& manifest) {
  std::map<absl::string_view, const v1::ContentFile*> blobs;
  for (const v1::ContentFile& f : manifest.files()) blobs.emplace(f.sha256(), &f);
  std::vector<BlobRef> out;
  out.reserve(blobs.size());
  for (const auto& [hash, f] : blobs)
    out.push_back({f->sha256(), f->size(), f->chunk_bytes(), f->chunk_sha256()});
  return out;
}

int64_t TotalBytes(const std::vector<BlobRef>& blobs) {
  int64_t total = 0;
  for (const BlobRef& b : blobs) total += b.size;
  return total;
}

namespace {

struct Scan {
  std::string root_real;  // realpath of the source, with a trailing '/'
  std::vector<SourceFile> files;
};

absl::Status AddFile(Scan& scan, const std::string& disk, const std::string& rel,
                     const struct stat& st) {
  if (static_cast<int>(scan.files.size()) >= kMaxFiles)
    return absl::InvalidArgumentError(
        absl::StrCat("the source holds more than ", kMaxFiles, " files"));
  RETURN_IF_ERROR(CheckRelativePath(rel));
  ASSIGN_OR_RETURN(FileDigest digest, HashFile(disk));
  SourceFile f;
  f.disk_path = disk;
  f.file.set_path(rel);
  f.file.set_size(digest.size);
  f.file.set_mode(st.st_mode & 0777);
  f.file.set_sha256(digest.sha256);
  scan.files.push_back(std::move(f));
  return absl::OkStatus();
}

absl::Status Walk(Scan& scan, const std::string& disk_dir, const std::string& rel_dir, int depth) {
  if (depth > 64) return absl::InvalidArgumentError("the source is nested more than 64 deep");
  DIR* d = ::opendir(disk_dir.c_str());
  if (d == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read folder ", disk_dir, ": ", std::strerror(errno)));
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string disk = disk_dir + "/" + name;
    const std::string rel = rel_dir.empty() ? name : rel_dir + "/" + name;
    struct stat st;
    if (::lstat(disk.c_str(), &st) != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", disk, ": ", std::strerror(errno)));
    if (S_ISDIR(st.st_mode)) {
      RETURN_IF_ERROR(Walk(scan, disk, rel, depth + 1));
    } else if (S_ISREG(st.st_mode)) {
      RETURN_IF_ERROR(AddFile(scan, disk, rel, st));
    } else if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      if (::realpath(disk.c_str(), target) == nullptr)
        return absl::InvalidArgumentError(absl::StrCat("symlink ", rel, " leads nowhere"));
      std::string real = target;
      if (real.compare(0, scan.root_real.size(), scan.root_real) != 0)
        return absl::InvalidArgumentError(
            absl::StrCat("symlink ", rel, " points out of the source folder (to ", real, ")"));
      struct stat tst;
      if (::stat(real.c_str(), &tst) != 0 || !S_ISREG(tst.st_mode))
        return absl::InvalidArgumentError(
            absl::StrCat("symlink ", rel,
                         " does not lead to a regular file (symlinked "
                         "folders are not followed)"));
      RETURN_IF_ERROR(AddFile(scan, real, rel, tst));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(rel, " is not a regular file or folder (device, socket or fifo)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<SourceFile>> ScanSource(const std::string& dir) {
  char real[PATH_MAX];
  if (::realpath(dir.c_str(), real) == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat("source folder ", dir, ": ", std::strerror(errno)));
  struct stat st;
  if (::stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
    return absl::InvalidArgumentError(absl::StrCat("source ", dir, " is not a folder"));
  Scan scan;
  scan.root_real = std::string(real) + "/";
  RETURN_IF_ERROR(Walk(scan, real, "", 0));
  if (scan.files.empty())
    return absl::InvalidArgumentError(absl::StrCat("source folder ", dir, " holds no files"));
  std::sort(scan.files.begin(), scan.files.end(),
            [](const SourceFile& a, const SourceFile& b) { return a.file.path() < b.file.path(); });
  return std::move(scan.files);
}

}  // namespace strata::content
