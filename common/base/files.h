#pragma once

// Reading a file whole, and replacing a small file so that a crash leaves
// either the old contents or the new, never a mix: write a temporary file
// beside it, (fsync it,) rename it over the target, (fsync the directory).
// For state files: the agent's identity, policy and queue, the MP's saved
// bundle and spool watermark, address files.

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata {

// Writes `data` to `path` atomically and durably, with permissions `mode`
// (whatever the umask). Internal (naming the path and the errno text) on failure;
// the target is then unchanged.
absl::Status WriteFileDurably(const std::string& path, const std::string& data, mode_t mode = 0600);

// The same without the syncs: after a crash the file holds the old contents
// or the new, but the new may be lost. For what is cheap to lose (the MP's
// spool watermark: a lost one only resends what the site already has).
absl::Status WriteFileAtomically(const std::string& path, const std::string& data,
                                 mode_t mode = 0600);

// The whole file, or NotFound naming it when it cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);
// The whole file, "" when it cannot be read (state not made yet).
std::string ReadFileOrEmpty(const std::string& path);

// What identifies a file's current version without reading it: device,
// inode, size and modification time ("" when it does not exist). A file
// replaced by rename (a new inode) or rewritten in place has a new stamp.
std::string FileStamp(const std::string& path);

}  // namespace strata
