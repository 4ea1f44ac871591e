#pragma once

// Owners and helpers for OpenSSL objects, shared by the PKI code
// (common/net/pki.cc, revocation.cc and strata-pki's authority): not an API
// of the rest of the tree.

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace strata::ossl {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME, X509_NAME_free>>;
using CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL, X509_CRL_free>>;
using IntPtr = std::unique_ptr<ASN1_INTEGER, Deleter<ASN1_INTEGER, ASN1_INTEGER_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;

// `what`, with OpenSSL's first queued error if any (the queue is cleared).
std::string OpenSslError(const std::string& what);
// A read-only BIO over `data` (which must outlive it).
BioPtr MemoryBio(absl::string_view data);
// Everything written to a memory BIO.
std::string DrainBio(BIO* bio);
std::string CertPem(X509* cert);
// Every certificate in a PEM text, in order (none: empty).
std::vector<X509Ptr> ParseCertificates(absl::string_view pem);
// Adds an extension given as OpenSSL's config text ("critical,CA:TRUE"),
// in the context of `issuer` (for the authority key identifier).
absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value);
// A serial in upper-case hex, as BN_bn2hex prints it.
std::string SerialHex(const ASN1_INTEGER* serial);

}  // namespace strata::ossl
