#pragma once

// The hierarchy's root certificate authority as strata-pki keeps it: a
// folder on an offline machine (or removable medium) holding
//
//   root.pem    the root certificate: every host's tls.ca_file
//   root.key    its key, PKCS#8 encrypted with the admin's passphrase
//               (AES-256); never leaves the folder
//   index.tsv   every certificate issued: serial, expiry, status, the
//               revocation date and reason, role/name
//   issued/     a copy of each issued certificate, SERIAL.pem
//   crl.pem     the latest revocation list (copied to every server's
//               tls.crl_file)
//   crlnumber   the CRL sequence number
//
// What the root signs: site servers, MPs, DPs and providers (server and
// client certificates, with the host's DNS names and addresses), admins
// (client), and each site's issuing CA (which signs that site's agents
// online). Servers accept every identity but an agent only from the root
// (common/net/tls.h IdentityFromCert).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/net/pki.h"

namespace strata::pki {

struct IndexEntry {
  std::string serial_hex;
  int64_t not_after_unix = 0;
  bool revoked = false;
  int64_t revoked_unix = 0;
  std::string reason;   // RFC 5280 reason name, e.g. keyCompromise
  std::string subject;  // role/name
  std::string key_id;   // SHA-256 of the key's SubjectPublicKeyInfo (hex)
};

// The reasons `revoke` takes (RFC 5280 CRLReason names).
const std::vector<std::string>& RevocationReasons();

class Authority {
 public:
  // Creates the folder's root: a new P-384 key encrypted with `passphrase`
  // (at least 12 characters) and a self-signed certificate O=Strata,
  // OU=ca, CN=`name`, valid `days`; an empty index and an empty CRL.
  // AlreadyExists when the folder already holds a root.
  static absl::StatusOr<std::unique_ptr<Authority>> Create(const std::string& dir,
                                                           const std::string& name, int days,
                                                           const std::string& passphrase);
  // Opens an existing root; PermissionDenied for a wrong passphrase.
  static absl::StatusOr<std::unique_ptr<Authority>> Open(const std::string& dir,
                                                         const std::string& passphrase);
  ~Authority();

  struct Issued {
    std::string cert_pem;
    std::string key_pem;  // empty when the request brought its own key
    std::string serial_hex;
  };
  // Issues a certificate as `spec` says (role and name: 1 to 64 letters,
  // digits and . _ - @). With `csr_pem` the request's key
  // is certified (its self-signature checked; its subject ignored);
  // without, a new P-256 key is made and returned unencrypted (the
  // service reads it at start; keep it 0640 root:strata-ROLE).
  absl::StatusOr<Issued> Issue(const CertificateSpec& spec, const std::string& csr_pem = "");
  // Issues a new certificate for the same key, subject and names as
  // `cert_pem` (which this root must have issued), valid `days` (0: as
  // long as the old one was). The host keeps its key; installing the new
  // certificate file is all a rotation takes.
  absl::StatusOr<Issued> Renew(const std::string& cert_pem, int days);
  // Revokes a serial and writes a new CRL (then the index: a failure
  // changes nothing). keyCompromise and cACompromise revoke the key: every
  // certificate for it, and Renew refuses it from then on. Another reason
  // with the key still in a valid certificate (a same-key renewal) is
  // refused without `force`: revoking an issuing CA's old certificate would
  // cut off every agent whose chain holds it. Returns the serials revoked.
  // NotFound for a serial this root never issued; FailedPrecondition when
  // already revoked.
  absl::StatusOr<std::vector<std::string>> Revoke(const std::string& serial_hex,
                                                  const std::string& reason, bool force = false);
  // Signs and writes crl.pem, valid `days` (the servers warn when it
  // lapses): every revoked certificate not yet expired. DataLoss when
  // crlnumber is damaged (servers refuse a CRL numbered lower than theirs).
  absl::StatusOr<std::string> WriteCrl(int days);

  absl::StatusOr<std::vector<IndexEntry>> List() const;
  const std::string& root_pem() const;

 private:
  Authority() = default;
  absl::Status Record(const std::string& cert_pem, const std::string& serial_hex,
                      const std::string& subject, const std::string& key_id);
  absl::StatusOr<std::string> WriteCrl(const std::vector<IndexEntry>& entries, int days);
  absl::Status SaveIndex(const std::vector<IndexEntry>& entries);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The index's serial for a certificate file or a serial given as text
// (hex, any case, colons allowed).
std::string NormalizeSerial(const std::string& text);

}  // namespace strata::pki
