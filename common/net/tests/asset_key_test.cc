// The runbook asset key: values sealed with AES-256-GCM open only with the
// same key, for the same asset, unaltered.

#include "common/net/asset_key.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>

#include "absl/strings/match.h"

using strata::AssetKey;

TEST_CASE(
    "an asset value sealed with the hierarchy key opens only with that key, for that asset, "
    "unaltered, and the sealed text holds no plaintext",
    "[assets]") {
  auto key = AssetKey::FromBytes(std::string(32, 'k'));
  auto other = AssetKey::FromBytes(std::string(32, 'o'));
  REQUIRE(key.ok());
  REQUIRE(other.ok());
  auto sealed = key->Seal("s3cr3t-pa55", "db");
  REQUIRE(sealed.ok());
  CHECK(absl::StartsWith(*sealed, "v1:"));
  CHECK_FALSE(absl::StrContains(*sealed, "s3cr3t"));
  auto again = key->Seal("s3cr3t-pa55", "db");
  CHECK(*again != *sealed);  // a fresh nonce each time
  CHECK(*key->Open(*sealed, "db") == "s3cr3t-pa55");
  CHECK(key->Open(*sealed, "web").status().code() == absl::StatusCode::kDataLoss);
  CHECK(other->Open(*sealed, "db").status().code() == absl::StatusCode::kDataLoss);
  std::string altered = *sealed;
  altered[10] = altered[10] == '0' ? '1' : '0';
  CHECK(key->Open(altered, "db").status().code() == absl::StatusCode::kDataLoss);
  CHECK(key->Open("plain", "db").status().code() == absl::StatusCode::kDataLoss);
  CHECK(*key->Open(*key->Seal("", "empty"), "empty") == "");

  const std::string path = "/tmp/st-asset-key-test";
  std::ofstream(path) << "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
  CHECK(AssetKey::Load(path).ok());
  std::ofstream(path) << "not hex";
  CHECK(AssetKey::Load(path).status().code() == absl::StatusCode::kInvalidArgument);
  std::remove(path.c_str());
  CHECK(AssetKey::FromBytes("short").status().code() == absl::StatusCode::kInvalidArgument);
}
