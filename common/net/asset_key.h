#pragma once

// The hierarchy's key for runbook assets (encrypted variables, credentials'
// secrets, certificates' private keys): AES-256-GCM from OpenSSL, the same
// 32-byte key at every site server and provider (a file of 64 hex digits,
// made by deploy/pki.sh as assets.key), never in any database. A sealed
// value is "v1:" and the hex of nonce (12 bytes), ciphertext and tag (16
// bytes); the asset's name is authenticated with it, so a sealed value
// moved to another asset does not open.

#include <string>

#include "absl/status/statusor.h"

namespace strata {

class AssetKey {
 public:
  // From a file of 64 hex digits (whitespace around them ignored).
  static absl::StatusOr<AssetKey> Load(const std::string& path);
  // From the 32 bytes themselves (tests).
  static absl::StatusOr<AssetKey> FromBytes(const std::string& key);

  absl::StatusOr<std::string> Seal(const std::string& plaintext, const std::string& name) const;
  // DataLoss when `sealed` was not made by this key for `name`, or was altered.
  absl::StatusOr<std::string> Open(const std::string& sealed, const std::string& name) const;

 private:
  std::string key_;
};

}  // namespace strata
