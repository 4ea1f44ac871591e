#pragma once

// Certificates for clients: an agent makes a key and a certificate signing
// request; its site's issuing CA signs it with the identity the site decides
// (OU = role, CN = client id), never the one the request asks for.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY
struct x509_st;      // OpenSSL's X509

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

// What a certificate says, for the root (strata-pki) and the sites'
// issuing CAs alike.
struct CertificateSpec {
  std::string role;                       // subject OU
  std::string name;                       // subject CN
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries
  bool ca = false;                        // a site's issuing CA (CA:TRUE, pathlen 0, no EKU)
  bool server = false;                    // serverAuth as well as clientAuth
  int days = 825;
};

// Issues a certificate for `public_key` as `spec` says, signed by `issuer`
// with `issuer_key`: a random 127-bit serial (hex into `serial_hex`), valid
// from 5 minutes ago. InvalidArgument for an address or name it cannot
// encode.
absl::StatusOr<std::string> IssueCertificate(evp_pkey_st* public_key, const CertificateSpec& spec,
                                             x509_st* issuer, evp_pkey_st* issuer_key,
                                             std::string* serial_hex);

// The role and name a certificate was issued for, with its SANs and
// validity, read back (strata-pki renew re-issues from it).
struct CertificateInfo {
  CertificateSpec spec;
  std::string serial_hex;
  std::string issuer_cn;
  int64_t not_after_unix = 0;
};
absl::StatusOr<CertificateInfo> InspectCertificate(const std::string& pem);

// Verifies the first certificate of `cert_file` (the rest of the file: its
// chain) against the certificates of `ca_file`. InvalidArgument naming the
// CA file and OpenSSL's reason.
absl::Status VerifyCertificateFile(const std::string& cert_file, const std::string& ca_file);

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
