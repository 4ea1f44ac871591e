#pragma once

// Blobs over HTTPS from a distribution point's nginx, with libcurl: mutual
// TLS (the hierarchy CA verifies the DP; the caller's certificate chain
// identifies it), a Range request from the bytes already received, the
// bytes appended to a library's blob writer (hashed as they are written).
// Used by pull-DPs (from their source DP) and by agents.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/content/transfer.h"
#include "strata/v1/config.pb.h"

namespace strata::content {

// The URL path of a blob on a DP: immutable, content-addressed.
std::string BlobUrlPath(absl::string_view sha256);

// A source of blobs at the DP `address` (host:port, or unix:/path: the
// request then goes over that socket to https://localhost). `tls`: the CA
// file to verify the DP, and the certificate (chain) and key to present.
// One connection, reused; one thread at a time. Errors: NotFound (the DP
// does not hold the blob), PermissionDenied (TLS refused either way),
// Unavailable (cannot connect, dropped, a server error), Cancelled (the
// chunk callback said stop).
absl::StatusOr<std::unique_ptr<BlobSource>> HttpsBlobSource(const std::string& address,
                                                            const v1::TlsConfig& tls,
                                                            std::string name);

}  // namespace strata::content
