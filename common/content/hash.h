#pragma once

// SHA-256 as content names: a streaming hasher (OpenSSL EVP), a file's hash,
// and the check that a string is one.

#include <openssl/evp.h>

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace strata::content {

class Sha256 {
 public:
  Sha256();
  void Update(absl::string_view data);
  void Update(const void* data, size_t size);
  // The digest in lower-case hex; the hasher is then spent.
  std::string HexDigest();
  // The hex digest of `data`.
  static std::string Of(absl::string_view data);

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

// 64 lower-case hex digits.
bool IsSha256Hex(absl::string_view s);

// The SHA-256 of a whole file and its size; NotFound / Internal naming it.
struct FileDigest {
  std::string sha256;
  int64_t size = 0;
};
absl::StatusOr<FileDigest> HashFile(const std::string& path);

}  // namespace strata::content
