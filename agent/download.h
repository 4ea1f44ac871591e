#pragma once

// Downloading a content version into the agent's cache, from the
// distribution points its MP named (best first): HTTPS range requests with
// libcurl under the agent's certificate, an interrupted blob resumed where
// it stopped (at the same DP or the next), a DP that fails or sends bytes
// that are not the blob left for the next, every blob verified before the
// cache shows it; then, when asked, its files copied out (each hash checked
// again on the way). The deployment engine uses the same.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/content_cache.h"
#include "strata/v1/client.pb.h"
#include "strata/v1/config.pb.h"

namespace strata::agent {

struct DownloadOptions {
  v1::TlsConfig tls;  // the hierarchy CA, the agent's certificate chain and key
  int64_t max_bytes_per_second = 0;
  std::string dest;  // copy the files here ("": only into the cache)
};

struct DownloadResult {
  int64_t bytes_downloaded = 0;       // over the network this time
  int64_t bytes_total = 0;            // the version's distinct blobs
  std::vector<std::string> dps_used;  // those that delivered bytes, in order
};

// Unavailable when no DP could deliver (nothing lost: the next call
// resumes); DataLoss when every DP sent bad bytes for a blob;
// FailedPrecondition when the cache cannot hold it.
absl::StatusOr<DownloadResult> Download(ContentCache& cache, const v1::ContentLocation& where,
                                        const DownloadOptions& options);

// Copies the files of `manifest` from the cache's library into `dest`,
// checking each file's hash as it is copied (DataLoss, and the blob taken
// out of the cache, when one is wrong). Nothing is written outside `dest`.
absl::Status CopyOut(content::Library& library, const v1::ContentManifest& manifest,
                     const std::string& dest);

}  // namespace strata::agent
