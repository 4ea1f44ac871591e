#pragma once

// Content manifests: the checks every manifest passes wherever it comes from
// (an admin's folder, a peer site, a management point), and reading a source
// folder into one. A manifest that passes names only relative paths inside
// its version's folder, so nothing built from it is written outside.

#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "strata/v1/content.pb.h"

namespace strata::content {

inline constexpr int kMaxFiles = 100000;
inline constexpr size_t kMaxPathBytes = 4096;
inline constexpr size_t kMaxPathPartBytes = 255;
inline constexpr int64_t kMaxFileBytes = int64_t{1} << 40;  // 1 TiB
// Chunk lists (ContentFile.chunk_sha256): the size of a chunk, and how many
// a file may have.
inline constexpr int64_t kMinChunkBytes = int64_t{1} << 20;
inline constexpr int64_t kMaxChunks = 65536;

// The chunk size the library gives a file of `size` bytes: 16 MiB, doubled
// until the file has at most 1,024 chunks. 0 for a file of one chunk or
// less (it is verified whole).
int64_t ChunkBytes(int64_t size);
// ceil(size / chunk_bytes).
int64_t ChunkCount(int64_t size, int64_t chunk_bytes);

// A relative path of a manifest: '/'-separated, no empty, "." or ".." part,
// no leading '/', no NUL or control character, bounded. InvalidArgument
// saying what is wrong.
absl::Status CheckRelativePath(absl::string_view path);

// Every file's path (above), size, mode and hash; paths unique and no file
// inside another's path ("a" and "a/b"); at most kMaxFiles. A chunk list
// must fit its file's size and chunk size, and files with the same hash
// carry the same list.
absl::Status CheckManifest(const v1::ContentManifest& manifest);

// The distinct blobs of a manifest, sorted, with their sizes.
struct BlobRef {
  std::string sha256;
  int64_t size = 0;
  int64_t chunk_bytes = 0;   // with chunks: their size, and
  std::string chunk_sha256;  // their hashes (ContentFile's)
};
std::vector<BlobRef> DistinctBlobs(const v1::ContentManifest& manifest);
int64_t TotalBytes(const std::vector<BlobRef>& blobs);

// A source folder read for upload: each regular file under `dir` with its
// path relative to it, size, mode and hash, sorted by path. A symlink to a
// regular file inside the folder is taken as that file; a symlink leading
// out of it, a symlinked directory, or any other kind of file (device,
// socket, fifo) is refused (InvalidArgument naming it), as is an empty
// folder or one beyond the manifest's bounds.
struct SourceFile {
  std::string disk_path;  // where to read the bytes
  v1::ContentFile file;
};
absl::StatusOr<std::vector<SourceFile>> ScanSource(const std::string& dir);

}  // namespace strata::content
