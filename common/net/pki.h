#pragma once

// Certificates for clients: an agent makes a key and a certificate signing
// request; its site's issuing CA signs it with the identity the site decides
// (OU = role, CN = client id), never the one the request asks for.

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace strata {

struct KeyAndCsr {
  std::string key_pem;  // PKCS#8, unencrypted (the agent keeps it 0600)
  std::string csr_pem;
};

// The SHA-256 of `data` in lower-case hex (how sites keep enrollment
// tokens).
std::string Sha256Hex(const std::string& data);

// A new EC P-256 key and a CSR for it (subject CN = `common_name`).
absl::StatusOr<KeyAndCsr> MakeKeyAndCsr(const std::string& common_name);

struct IssuedCertificate {
  std::string chain_pem;  // the leaf, then the issuing CA's certificate
  std::string serial_hex;
};

class IssuingCa {
 public:
  // Loads a CA certificate and its key (PEM). The key must match.
  static absl::StatusOr<std::unique_ptr<IssuingCa>> Load(const std::string& cert_file,
                                                         const std::string& key_file);
  ~IssuingCa();

  // Checks the CSR's self-signature and issues a client certificate for its
  // key: subject O=Strata, OU=`role`, CN=`common_name`, clientAuth, valid
  // `days`. InvalidArgument for a malformed or unsigned request.
  absl::StatusOr<IssuedCertificate> Sign(const std::string& csr_pem, const std::string& role,
                                         const std::string& common_name, int days) const;

 private:
  IssuingCa() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata
