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

#include <arpa/inet.h>

#include <cctype>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/status.h"
#include "common/net/openssl_util.h"
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

using ossl::BioPtr;
using ossl::BnPtr;
using ossl::DrainBio;
using ossl::KeyPtr;
using ossl::MemoryBio;
using ossl::NamePtr;
using ossl::OpenSslError;
using ossl::ReqPtr;
using ossl::X509Ptr;
// The stack only points at certificates owned elsewhere.
void X509StackFree(STACK_OF(X509) * s) { sk_X509_free(s); }
template <typename T, void (*F)(T*)>
using Deleter = ossl::Deleter<T, F>;

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

bool ValidDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  }
  return name.front() != '.' && name.front() != '-';
}

bool ValidIp(const std::string& ip) {
  unsigned char buf[16];
  return inet_pton(AF_INET, ip.c_str(), buf) == 1 || inet_pton(AF_INET6, ip.c_str(), buf) == 1;
}

std::string NameEntry(X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return "";
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
  if (len < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), len);
  OPENSSL_free(utf8);
  return out;
}

}  // namespace

absl::StatusOr<std::string> IssueCertificate(EVP_PKEY* public_key, const CertificateSpec& spec,
                                             X509* issuer, EVP_PKEY* issuer_key,
                                             std::string* serial_hex) {
  if (spec.days <= 0 || spec.days > 36500) {
    return absl::InvalidArgumentError(
        absl::StrCat("validity of ", spec.days, " days: give 1 to 36500"));
  }
  std::string san;
  for (const std::string& dns : spec.dns_names) {
    if (!ValidDnsName(dns)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", dns, "\" is not a DNS name (letters, digits, '-' and '.')"));
    }
    absl::StrAppend(&san, san.empty() ? "" : ",", "DNS:", dns);
  }
  for (const std::string& ip : spec.ip_addresses) {
    if (!ValidIp(ip)) {
      return absl::InvalidArgumentError(absl::StrCat("\"", ip, "\" is not an IP address"));
    }
    absl::StrAppend(&san, san.empty() ? "" : ",", "IP:", ip);
  }
  X509Ptr cert(X509_new());
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) {
    return absl::InternalError(OpenSslError("no random bytes for a serial"));
  }
  serial_bytes[0] &= 0x7f;  // positive
  BnPtr serial(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  auto subject = MakeName(spec.role, spec.name);
  if (!subject.ok()) return subject.status();
  if (X509_set_version(cert.get(), 2) != 1 ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) ||
      X509_set_subject_name(cert.get(), subject->get()) != 1 ||
      X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)) != 1 ||
      !X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{spec.days} * 86400) ||
      X509_set_pubkey(cert.get(), public_key) != 1) {
    return absl::InternalError(OpenSslError("cannot build the certificate"));
  }
  std::vector<std::pair<int, std::string>> extensions;
  if (spec.ca) {
    extensions = {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                  {NID_key_usage, "critical,keyCertSign,cRLSign"}};
  } else {
    extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                  {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                  {NID_ext_key_usage, spec.server ? "serverAuth,clientAuth" : "clientAuth"}};
  }
  extensions.push_back({NID_subject_key_identifier, "hash"});
  extensions.push_back({NID_authority_key_identifier, "keyid:always"});
  if (!san.empty()) extensions.push_back({NID_subject_alt_name, san});
  for (const auto& [nid, value] : extensions) {
    if (absl::Status s = ossl::AddExtension(cert.get(), issuer, nid, value.c_str()); !s.ok())
      return s;
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) {
    return absl::InternalError(OpenSslError("cannot sign the certificate"));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(out.get(), cert.get());
  if (serial_hex != nullptr) {
    char* hex = BN_bn2hex(serial.get());
    *serial_hex = hex;
    OPENSSL_free(hex);
  }
  return DrainBio(out.get());
}

absl::StatusOr<CertificateInfo> InspectCertificate(const std::string& pem) {
  BioPtr in = MemoryBio(pem);
  X509Ptr cert(PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr));
  if (!cert) return absl::InvalidArgumentError(OpenSslError("not a PEM certificate"));
  CertificateInfo info;
  X509_NAME* subject = X509_get_subject_name(cert.get());
  info.spec.role = NameEntry(subject, NID_organizationalUnitName);
  info.spec.name = NameEntry(subject, NID_commonName);
  info.issuer_cn = NameEntry(X509_get_issuer_name(cert.get()), NID_commonName);
  info.spec.ca = X509_check_ca(cert.get()) != 0;
  info.spec.server = (X509_get_extension_flags(cert.get()) & EXFLAG_XKUSAGE) != 0 &&
                     (X509_get_extended_key_usage(cert.get()) & XKU_SSL_SERVER) != 0;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      const ASN1_STRING* dns = name->d.dNSName;
      info.spec.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                                       ASN1_STRING_length(dns));
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      const int length = ASN1_STRING_length(ip);
      if (length != 4 && length != 16) continue;  // not an address: skipped
      char text[INET6_ADDRSTRLEN] = {0};
      if (inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                    sizeof text) != nullptr)
        info.spec.ip_addresses.emplace_back(text);
    }
  }
  GENERAL_NAMES_free(names);
  int days = 0, seconds = 0;
  if (ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert.get()),
                     X509_get0_notAfter(cert.get())) == 1) {
    info.spec.days = days;
  }
  struct tm tm;
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &tm) == 1) info.not_after_unix = timegm(&tm);
  info.serial_hex = ossl::SerialHex(X509_get0_serialNumber(cert.get()));
  return info;
}

namespace {

absl::StatusOr<std::vector<X509Ptr>> ReadCertificates(const std::string& path) {
  auto pem = ReadFile(path);
  if (!pem.ok()) return absl::InvalidArgumentError(absl::StrCat(path, " cannot be read"));
  std::vector<X509Ptr> out = ossl::ParseCertificates(*pem);
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no PEM certificate"));
  return out;
}

}  // namespace

absl::Status VerifyCertificateFile(const std::string& cert_file, const std::string& ca_file) {
  ASSIGN_OR_RETURN(std::vector<X509Ptr> certs, ReadCertificates(cert_file));
  ASSIGN_OR_RETURN(std::vector<X509Ptr> cas, ReadCertificates(ca_file));
  std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>> store(X509_STORE_new());
  for (auto& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  std::unique_ptr<STACK_OF(X509), Deleter<STACK_OF(X509), X509StackFree>> untrusted(
      sk_X509_new_null());
  for (size_t i = 1; i < certs.size(); ++i) sk_X509_push(untrusted.get(), certs[i].get());
  std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>> ctx(
      X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), certs[0].get(), untrusted.get());
  if (X509_verify_cert(ctx.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("not trusted by ", ca_file, ": ",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()))));
  }
  return absl::OkStatus();
}

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
  CertificateSpec spec;
  spec.role = role;
  spec.name = common_name;
  spec.days = days;
  IssuedCertificate issued;
  ASSIGN_OR_RETURN(std::string leaf, IssueCertificate(pub.get(), spec, impl_->cert.get(),
                                                      impl_->key.get(), &issued.serial_hex));
  issued.chain_pem = leaf + impl_->cert_pem;
  return issued;
}

}  // namespace strata
