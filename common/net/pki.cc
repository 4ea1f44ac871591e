#include "common/net/pki.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/net/tls.h"

namespace strata {

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  std::string out;
  for (unsigned char c : digest) absl::StrAppendFormat(&out, "%02x", c);
  return out;
}

namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;
using NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME, X509_NAME_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;

std::string OpenSslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return what;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return absl::StrCat(what, ": ", buf);
}

BioPtr MemoryBio(const std::string& data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string DrainBio(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, n);
}

absl::StatusOr<NamePtr> MakeName(const std::string& role, const std::string& cn) {
  NamePtr name(X509_NAME_new());
  auto add = [&](const char* field, const std::string& value) {
    return X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!add("O", "Strata") || (!role.empty() && !add("OU", role)) || !add("CN", cn)) {
    return absl::InvalidArgumentError(OpenSslError("cannot build the certificate subject"));
  }
  return name;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return absl::InternalError(OpenSslError("cannot add a certificate extension"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<KeyAndCsr> MakeKeyAndCsr(const std::string& common_name) {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return absl::InternalError(OpenSslError("cannot generate an EC key"));
  ReqPtr req(X509_REQ_new());
  auto name = MakeName("", common_name);
  if (!name.ok()) return name.status();
  if (X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_REQ_set_subject_name(req.get(), name->get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.get()) != 1 ||
      X509_REQ_sign(req.get(), key.get(), EVP_sha256()) <= 0) {
    return absl::InternalError(OpenSslError("cannot build the certificate request"));
  }
  BioPtr key_bio(BIO_new(BIO_s_mem())), csr_bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1 ||
      PEM_write_bio_X509_REQ(csr_bio.get(), req.get()) != 1) {
    return absl::InternalError(OpenSslError("cannot encode the key or request"));
  }
  return KeyAndCsr{DrainBio(key_bio.get()), DrainBio(csr_bio.get())};
}

struct IssuingCa::Impl {
  X509Ptr cert;
  KeyPtr key;
  std::string cert_pem;
};

IssuingCa::~IssuingCa() = default;

absl::StatusOr<std::unique_ptr<IssuingCa>> IssuingCa::Load(const std::string& cert_file,
                                                           const std::string& key_file) {
  auto cert_pem = ReadFile(cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = ReadFile(key_file);
  if (!key_pem.ok()) return key_pem.status();
  auto ca = std::unique_ptr<IssuingCa>(new IssuingCa());
  ca->impl_ = std::make_unique<Impl>();
  BioPtr cb = MemoryBio(*cert_pem), kb = MemoryBio(*key_pem);
  ca->impl_->cert.reset(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  ca->impl_->key.reset(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  if (!ca->impl_->cert || !ca->impl_->key) {
    return absl::InvalidArgumentError(
        OpenSslError(absl::StrCat("issuing CA: cannot read ", cert_file, " / ", key_file)));
  }
  if (X509_check_private_key(ca->impl_->cert.get(), ca->impl_->key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("issuing CA: ", key_file, " is not the key of ", cert_file));
  }
  if (X509_check_ca(ca->impl_->cert.get()) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("issuing CA: ", cert_file, " is not a CA certificate"));
  }
  // Servers accept only agents from a CA that is not the root (OU=ca); an
  // issuing CA must say what it is.
  char ou[256] = {0};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(ca->impl_->cert.get()),
                                NID_organizationalUnitName, ou, sizeof ou) <= 0 ||
      std::string(ou) != "issuing") {
    return absl::InvalidArgumentError(
        absl::StrCat("issuing CA: ", cert_file,
                     " must name OU=issuing in its subject (deploy/pki.sh DIR issuing/CODE)"));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(out.get(), ca->impl_->cert.get());
  ca->impl_->cert_pem = DrainBio(out.get());
  return ca;
}

absl::StatusOr<IssuedCertificate> IssuingCa::Sign(const std::string& csr_pem,
                                                  const std::string& role,
                                                  const std::string& common_name, int days) const {
  if (csr_pem.size() > 16 * 1024) {
    return absl::InvalidArgumentError("certificate request larger than 16 KiB");
  }
  BioPtr in = MemoryBio(csr_pem);
  ReqPtr req(PEM_read_bio_X509_REQ(in.get(), nullptr, nullptr, nullptr));
  if (!req) return absl::InvalidArgumentError(OpenSslError("malformed certificate request"));
  KeyPtr pub(X509_REQ_get_pubkey(req.get()));
  if (!pub || X509_REQ_verify(req.get(), pub.get()) != 1) {
    return absl::InvalidArgumentError(
        OpenSslError("certificate request is not signed by its own key"));
  }
  X509Ptr cert(X509_new());
  unsigned char serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof serial_bytes);
  serial_bytes[0] &= 0x7f;  // positive
  BnPtr serial(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  auto subject = MakeName(role, common_name);
  if (!subject.ok()) return subject.status();
  if (X509_set_version(cert.get(), 2) != 1 ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) ||
      X509_set_subject_name(cert.get(), subject->get()) != 1 ||
      X509_set_issuer_name(cert.get(), X509_get_subject_name(impl_->cert.get())) != 1 ||
      !X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{days} * 86400) ||
      X509_set_pubkey(cert.get(), pub.get()) != 1) {
    return absl::InternalError(OpenSslError("cannot build the certificate"));
  }
  X509* issuer = impl_->cert.get();
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                            {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                            {NID_ext_key_usage, "clientAuth"},
                            {NID_subject_key_identifier, "hash"},
                            {NID_authority_key_identifier, "keyid:always"}}) {
    if (absl::Status s = AddExtension(cert.get(), issuer, nid, value); !s.ok()) return s;
  }
  if (X509_sign(cert.get(), impl_->key.get(), EVP_sha256()) <= 0) {
    return absl::InternalError(OpenSslError("cannot sign the certificate"));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(out.get(), cert.get());
  char* hex = BN_bn2hex(serial.get());
  IssuedCertificate issued{DrainBio(out.get()) + impl_->cert_pem, hex};
  OPENSSL_free(hex);
  return issued;
}

}  // namespace strata
