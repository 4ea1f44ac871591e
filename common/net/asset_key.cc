#include "common/net/asset_key.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/files.h"

namespace strata {
namespace {

constexpr size_t kKeyBytes = 32, kNonceBytes = 12, kTagBytes = 16;
constexpr char kPrefix[] = "v1:";

using Ctx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

bool IsHex(const std::string& s) {
  for (char c : s)
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  return s.size() % 2 == 0;
}

}  // namespace

absl::StatusOr<AssetKey> AssetKey::Load(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  const std::string hex(absl::StripAsciiWhitespace(*text));
  if (hex.size() != 2 * kKeyBytes || !IsHex(hex))
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": an asset key is 64 hex digits (openssl rand -hex 32)"));
  return FromBytes(absl::HexStringToBytes(hex));
}

absl::StatusOr<AssetKey> AssetKey::FromBytes(const std::string& key) {
  if (key.size() != kKeyBytes) return absl::InvalidArgumentError("an asset key is 32 bytes");
  AssetKey k;
  k.key_ = key;
  return k;
}

absl::StatusOr<std::string> AssetKey::Seal(const std::string& plaintext,
                                           const std::string& name) const {
  unsigned char nonce[kNonceBytes];
  if (RAND_bytes(nonce, sizeof(nonce)) != 1) return absl::InternalError("RAND_bytes failed");
  Ctx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string out(plaintext.size(), '\0');
  unsigned char tag[kTagBytes];
  int n = 0, m = 0;
  const auto* key = reinterpret_cast<const unsigned char*>(key_.data());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(name.data()),
                        static_cast<int>(name.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n,
                        reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + n, &m) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) != 1)
    return absl::InternalError("AES-256-GCM encryption failed");
  return absl::StrCat(
      kPrefix, absl::BytesToHexString(std::string(reinterpret_cast<char*>(nonce), kNonceBytes)),
      absl::BytesToHexString(out),
      absl::BytesToHexString(std::string(reinterpret_cast<char*>(tag), kTagBytes)));
}

absl::StatusOr<std::string> AssetKey::Open(const std::string& sealed,
                                           const std::string& name) const {
  const std::string hex = sealed.substr(std::min(sealed.size(), sizeof(kPrefix) - 1));
  if (!absl::StartsWith(sealed, kPrefix) || !IsHex(hex) ||
      hex.size() < 2 * (kNonceBytes + kTagBytes))
    return absl::DataLossError("not a sealed asset value");
  const std::string bytes = absl::HexStringToBytes(hex);
  const std::string nonce = bytes.substr(0, kNonceBytes);
  const std::string tag = bytes.substr(bytes.size() - kTagBytes);
  const std::string cipher = bytes.substr(kNonceBytes, bytes.size() - kNonceBytes - kTagBytes);
  Ctx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string out(cipher.size(), '\0');
  int n = 0, m = 0;
  std::string tag_copy = tag;
  const auto* key = reinterpret_cast<const unsigned char*>(key_.data());
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key,
                         reinterpret_cast<const unsigned char*>(nonce.data())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(name.data()),
                        static_cast<int>(name.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n,
                        reinterpret_cast<const unsigned char*>(cipher.data()),
                        static_cast<int>(cipher.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag_copy.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + n, &m) != 1)
    return absl::DataLossError(
        "the sealed value does not open with this key for this asset (another hierarchy's key, "
        "or altered)");
  return out;
}

}  // namespace strata
