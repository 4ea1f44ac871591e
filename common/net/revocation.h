#pragma once

// The hierarchy's certificate revocation list (CRL), as every server
// honours it: `strata-pki revoke` lists a certificate, `strata-pki crl`
// writes the signed list, an admin copies it to each server's
// tls.crl_file, and each server re-reads it when the file changes (at most
// once a second, on the next handshake) — no restart.
//
// One list, signed by the root CA: it names what the root issued (site
// servers, MPs, DPs, providers, admins and the sites' issuing CAs).
// Revoking a site's issuing CA cuts off every agent it signed, since a
// chain is refused when any certificate in it is listed. Agents are
// removed one by one through their site (device blocking), not here.

#include <sys/types.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

struct x509_st;      // OpenSSL's X509
struct X509_crl_st;  // OpenSSL's X509_CRL

namespace strata {

class RevocationList {
 public:
  // Reads `crl_file`, which must be a CRL signed by a CA in `ca_file`. An
  // empty `crl_file` makes a list that revokes nothing. InvalidArgument,
  // naming the file, when it cannot be read, parsed or verified.
  static absl::StatusOr<std::shared_ptr<RevocationList>> Open(const std::string& crl_file,
                                                              const std::string& ca_file);
  ~RevocationList();

  // Unauthenticated, naming the certificate and the date, when any
  // certificate in `chain_pem` (PEM, leaf first) is revoked; OK otherwise
  // (an empty chain included: the caller decides whether one is needed).
  absl::Status CheckChain(absl::string_view chain_pem);
  // The same for one parsed certificate (the nudge channel's peer).
  absl::Status CheckCertificate(x509_st* cert);

  // The list in force: how many certificates it names and when its issuer
  // said it would publish the next one (0 without a list).
  int revoked_count();
  // The serials listed, in hex as OpenSSL prints a certificate's (nginx's
  // $ssl_client_serial): the DP's nginx refuses them by a map.
  std::vector<std::string> serials();
  std::time_t next_update();

 private:
  RevocationList(std::string crl_file, std::string ca_file);
  // Re-reads the file when its inode, size or mtime changed. A file that
  // no longer verifies is logged and the last good list stays in force.
  void Refresh();
  // Reads and verifies the file; `stamp_read`: the stamp of what was read
  // (taken before reading). A list numbered lower than the one in force is
  // refused.
  absl::Status Load(std::string* stamp_read);
  std::shared_ptr<X509_crl_st> Current();

  const std::string crl_file_;
  const std::string ca_file_;
  absl::Mutex mu_;
  std::shared_ptr<X509_crl_st> crl_ ABSL_GUARDED_BY(mu_);
  std::string stamp_ ABSL_GUARDED_BY(mu_);
  int64_t last_look_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace strata
