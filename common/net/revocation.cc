#include "common/net/revocation.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/files.h"
#include "common/base/log.h"
#include "common/net/openssl_util.h"

namespace strata {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

using ossl::ParseCertificates;
using ossl::SerialHex;
using ossl::X509Ptr;

std::string TimeText(const ASN1_TIME* t) {
  BIO* bio = BIO_new(BIO_s_mem());
  ASN1_TIME_print(bio, t);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n);
  BIO_free(bio);
  return out;
}

}  // namespace

RevocationList::RevocationList(std::string crl_file, std::string ca_file)
    : crl_file_(std::move(crl_file)), ca_file_(std::move(ca_file)) {}

RevocationList::~RevocationList() = default;

absl::StatusOr<std::shared_ptr<RevocationList>> RevocationList::Open(const std::string& crl_file,
                                                                     const std::string& ca_file) {
  std::shared_ptr<RevocationList> list(new RevocationList(crl_file, ca_file));
  if (crl_file.empty()) return list;
  std::string stamp;
  absl::Status s = list->Load(&stamp);
  if (!s.ok()) return s;
  return list;
}

namespace {

// The CRL number extension (-1 without one).
int64_t CrlNumber(X509_CRL* crl) {
  auto* number =
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, NID_crl_number, nullptr, nullptr));
  int64_t value = -1;
  if (number != nullptr && ASN1_INTEGER_get_int64(&value, number) != 1) value = -1;
  ASN1_INTEGER_free(number);
  return value;
}

}  // namespace

absl::Status RevocationList::Load(std::string* stamp_read) {
  const std::string stamp = FileStamp(crl_file_);
  *stamp_read = stamp;
  auto text = ReadFile(crl_file_);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("tls: CRL file ", crl_file_, " cannot be read"));
  }
  BIO* bio = BIO_new_mem_buf(text->data(), static_cast<int>(text->size()));
  std::shared_ptr<X509_CRL> crl(PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr),
                                X509_CRL_free);
  BIO_free(bio);
  ERR_clear_error();
  if (!crl) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: CRL file ", crl_file_, " is not a PEM certificate revocation list"));
  }
  auto ca_text = ReadFile(ca_file_);
  if (!ca_text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("tls: CA file ", ca_file_, " cannot be read"));
  }
  bool verified = false;
  for (const X509Ptr& ca : ParseCertificates(*ca_text)) {
    if (X509_NAME_cmp(X509_get_subject_name(ca.get()), X509_CRL_get_issuer(crl.get())) != 0)
      continue;
    EVP_PKEY* key = X509_get0_pubkey(ca.get());
    if (key != nullptr && X509_CRL_verify(crl.get(), key) == 1) verified = true;
  }
  ERR_clear_error();
  if (!verified) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: CRL file ", crl_file_, " is not signed by the CA in ", ca_file_));
  }
  absl::MutexLock lock(&mu_);
  // An older list, validly signed but replayed, must not bring a revoked
  // certificate back.
  if (crl_ && CrlNumber(crl.get()) < CrlNumber(crl_.get())) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls: CRL file ", crl_file_, " is number ", CrlNumber(crl.get()),
                     ", older than the list in force (number ", CrlNumber(crl_.get()), ")"));
  }
  crl_ = std::move(crl);
  stamp_ = stamp;
  return absl::OkStatus();
}

void RevocationList::Refresh() {
  if (crl_file_.empty()) return;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = NowMs();
    if (now - last_look_ms_ < 1000) return;
    last_look_ms_ = now;
    if (FileStamp(crl_file_) == stamp_) return;
  }
  std::string stamp;
  absl::Status s = Load(&stamp);
  if (s.ok()) {
    LogInfo("tls.crl_loaded", {{"file", crl_file_}, {"revoked", revoked_count()}});
  } else {
    LogWarning("tls.crl_unusable", {{"error", s}, {"kept", "the last good list stays in force"}});
    absl::MutexLock lock(&mu_);
    stamp_ = stamp;  // warn once per version of the file (the one read)
  }
}

std::shared_ptr<X509_CRL> RevocationList::Current() {
  Refresh();
  absl::MutexLock lock(&mu_);
  return crl_;
}

absl::Status RevocationList::CheckCertificate(X509* cert) {
  std::shared_ptr<X509_CRL> crl = Current();
  if (!crl || cert == nullptr) return absl::OkStatus();
  X509_REVOKED* entry = nullptr;
  if (X509_CRL_get0_by_cert(crl.get(), &entry, cert) != 1) return absl::OkStatus();
  char subject[256] = {0};
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  const std::string who =
      absl::StrCat(subject, " (serial ", SerialHex(X509_get0_serialNumber(cert)), ")");
  return absl::UnauthenticatedError(absl::StrCat("certificate ", who, " was revoked on ",
                                                 TimeText(X509_REVOKED_get0_revocationDate(entry)),
                                                 " (", crl_file_, ")"));
}

absl::Status RevocationList::CheckChain(absl::string_view chain_pem) {
  if (crl_file_.empty() || chain_pem.empty()) return absl::OkStatus();
  std::vector<X509Ptr> certs = ParseCertificates(chain_pem);
  if (certs.empty()) {
    return absl::UnauthenticatedError("the peer's certificate chain cannot be read");
  }
  for (const X509Ptr& cert : certs) {
    absl::Status s = CheckCertificate(cert.get());
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::vector<std::string> RevocationList::serials() {
  std::vector<std::string> out;
  std::shared_ptr<X509_CRL> crl = Current();
  if (!crl) return out;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; revoked != nullptr && i < sk_X509_REVOKED_num(revoked); ++i) {
    BIO* bio = BIO_new(BIO_s_mem());
    i2a_ASN1_INTEGER(bio, X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i)));
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    out.emplace_back(data, n);
    BIO_free(bio);
  }
  return out;
}

int RevocationList::revoked_count() {
  absl::MutexLock lock(&mu_);
  if (!crl_) return 0;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl_.get());
  return revoked ? sk_X509_REVOKED_num(revoked) : 0;
}

std::time_t RevocationList::next_update() {
  absl::MutexLock lock(&mu_);
  if (!crl_) return 0;
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl_.get());
  if (next == nullptr) return 0;
  struct tm tm;
  if (ASN1_TIME_to_tm(next, &tm) != 1) return 0;
  return timegm(&tm);
}

}  // namespace strata
