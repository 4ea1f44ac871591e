#include "pki/authority.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/files.h"
#include "common/base/status.h"
#include "common/net/openssl_util.h"

namespace strata::pki {
namespace {

using ossl::AddExtension;
using ossl::BioPtr;
using ossl::BnPtr;
using ossl::CertPem;
using ossl::CrlPtr;
using ossl::DrainBio;
using ossl::IntPtr;
using ossl::KeyPtr;
using ossl::MemoryBio;
using ossl::OpenSslError;
using ossl::ReqPtr;
using ossl::X509Ptr;
template <typename T, void (*F)(T*)>
using Deleter = ossl::Deleter<T, F>;

constexpr size_t kMinPassphrase = 12;
constexpr size_t kMaxPassphrase = 1000;  // strata-pki reads at most 1023 bytes back

int ReasonCode(const std::string& reason) {
  const auto& reasons = RevocationReasons();
  auto it = std::find(reasons.begin(), reasons.end(), reason);
  return it == reasons.end() ? -1 : static_cast<int>(it - reasons.begin());
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// What identifies a key across its certificates: the SHA-256 of its
// SubjectPublicKeyInfo.
std::string KeyId(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key, &der);
  if (n <= 0) return "";
  std::string out = Sha256Hex(std::string(reinterpret_cast<char*>(der), n));
  OPENSSL_free(der);
  return out;
}

// A certificate's name as the index and file names carry it: no tab, newline,
// slash or other byte that would break them.
bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
          c == '@'))
      return false;
  }
  return name != "." && name != "..";
}

bool KeyCompromised(const IndexEntry& e) {
  return e.revoked && (e.reason == "keyCompromise" || e.reason == "cACompromise");
}

}  // namespace

const std::vector<std::string>& RevocationReasons() {
  // Index = the RFC 5280 CRLReason code.
  static const std::vector<std::string> kReasons = {"unspecified",  "keyCompromise",
                                                    "cACompromise", "affiliationChanged",
                                                    "superseded",   "cessationOfOperation"};
  return kReasons;
}

std::string NormalizeSerial(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == ':') continue;
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  const size_t first = out.find_first_not_of('0');
  if (first == std::string::npos) return out.empty() ? out : "0";
  return out.substr(first);
}

struct Authority::Impl {
  std::string dir;
  X509Ptr cert;
  KeyPtr key;
  std::string cert_pem;
  std::string Path(const std::string& name) const { return dir + "/" + name; }
};

Authority::~Authority() = default;

absl::StatusOr<std::unique_ptr<Authority>> Authority::Create(const std::string& dir,
                                                             const std::string& name, int days,
                                                             const std::string& passphrase) {
  if (passphrase.size() < kMinPassphrase || passphrase.size() > kMaxPassphrase ||
      passphrase.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("the root key's passphrase must have ",
                                                   kMinPassphrase, " to ", kMaxPassphrase,
                                                   " characters (and no NUL)"));
  }
  if (name.empty()) return absl::InvalidArgumentError("the root needs a name (--name)");
  if (days <= 0 || days > 36500) {
    return absl::InvalidArgumentError(absl::StrCat("validity of ", days, " days: give 1 to 36500"));
  }
  if (std::filesystem::exists(dir + "/root.pem") || std::filesystem::exists(dir + "/root.key")) {
    return absl::AlreadyExistsError(
        absl::StrCat(dir, " already holds a root (root.pem); a root is made once"));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir + "/issued", ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  ::chmod(dir.c_str(), 0700);

  KeyPtr key(EVP_EC_gen("P-384"));
  if (!key) return absl::InternalError(OpenSslError("cannot generate the root key"));
  X509Ptr cert(X509_new());
  X509_NAME* subject = X509_get_subject_name(cert.get());
  auto add = [&](const char* field, const std::string& value) {
    return X509_NAME_add_entry_by_txt(subject, field, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  IntPtr serial(ASN1_INTEGER_new());
  ASN1_INTEGER_set(serial.get(), 1);
  if (!add("O", "Strata") || !add("OU", "ca") || !add("CN", name) ||
      X509_set_version(cert.get(), 2) != 1 ||
      X509_set_serialNumber(cert.get(), serial.get()) != 1 ||
      X509_set_issuer_name(cert.get(), subject) != 1 ||
      !X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) ||
      !X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{days} * 86400) ||
      X509_set_pubkey(cert.get(), key.get()) != 1) {
    return absl::InternalError(OpenSslError("cannot build the root certificate"));
  }
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                            {NID_key_usage, "critical,keyCertSign,cRLSign"},
                            {NID_subject_key_identifier, "hash"},
                            {NID_authority_key_identifier, "keyid:always"}}) {
    RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), nid, value));
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha384()) <= 0) {
    return absl::InternalError(OpenSslError("cannot sign the root certificate"));
  }
  BioPtr key_out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PKCS8PrivateKey(key_out.get(), key.get(), EVP_aes_256_cbc(),
                                    const_cast<char*>(passphrase.data()),
                                    static_cast<int>(passphrase.size()), nullptr, nullptr) != 1) {
    return absl::InternalError(OpenSslError("cannot encrypt the root key"));
  }
  auto authority = std::unique_ptr<Authority>(new Authority());
  authority->impl_ = std::make_unique<Impl>();
  Impl& impl = *authority->impl_;
  impl.dir = dir;
  impl.cert_pem = CertPem(cert.get());
  RETURN_IF_ERROR(WriteFileDurably(impl.Path("root.key"), DrainBio(key_out.get()), 0600));
  RETURN_IF_ERROR(WriteFileDurably(impl.Path("root.pem"), impl.cert_pem, 0644));
  RETURN_IF_ERROR(WriteFileDurably(impl.Path("index.tsv"), "", 0600));
  RETURN_IF_ERROR(WriteFileDurably(impl.Path("crlnumber"), "1\n", 0600));
  impl.cert = std::move(cert);
  impl.key = std::move(key);
  RETURN_IF_ERROR(authority->WriteCrl(30).status());
  return authority;
}

absl::StatusOr<std::unique_ptr<Authority>> Authority::Open(const std::string& dir,
                                                           const std::string& passphrase) {
  auto authority = std::unique_ptr<Authority>(new Authority());
  authority->impl_ = std::make_unique<Impl>();
  Impl& impl = *authority->impl_;
  impl.dir = dir;
  auto cert_pem = ReadFile(impl.Path("root.pem"));
  auto key_pem = ReadFile(impl.Path("root.key"));
  if (!cert_pem.ok() || !key_pem.ok()) {
    return absl::NotFoundError(
        absl::StrCat(dir, " holds no root (root.pem, root.key): run strata-pki init first"));
  }
  BioPtr cb = MemoryBio(*cert_pem), kb = MemoryBio(*key_pem);
  impl.cert.reset(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  if (!impl.cert) {
    return absl::InvalidArgumentError(OpenSslError(impl.Path("root.pem") + " is not PEM"));
  }
  impl.key.reset(
      PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, const_cast<char*>(passphrase.c_str())));
  ERR_clear_error();
  if (!impl.key) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot decrypt ", impl.Path("root.key"), ": wrong passphrase"));
  }
  if (X509_check_private_key(impl.cert.get(), impl.key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(impl.Path("root.key"), " is not the key of ", impl.Path("root.pem")));
  }
  impl.cert_pem = *cert_pem;
  return authority;
}

const std::string& Authority::root_pem() const { return impl_->cert_pem; }

absl::StatusOr<Authority::Issued> Authority::Issue(const CertificateSpec& spec,
                                                   const std::string& csr_pem) {
  if (!ValidName(spec.role) || !ValidName(spec.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", spec.role, "/", spec.name,
                     "\": a role and a name are 1 to 64 letters, digits and . _ - @"));
  }
  Issued issued;
  KeyPtr key;
  if (!csr_pem.empty()) {
    if (csr_pem.size() > 16 * 1024) {
      return absl::InvalidArgumentError("certificate request larger than 16 KiB");
    }
    BioPtr in = MemoryBio(csr_pem);
    ReqPtr req(PEM_read_bio_X509_REQ(in.get(), nullptr, nullptr, nullptr));
    if (!req) return absl::InvalidArgumentError(OpenSslError("malformed certificate request"));
    key.reset(X509_REQ_get_pubkey(req.get()));
    if (!key || X509_REQ_verify(req.get(), key.get()) != 1) {
      return absl::InvalidArgumentError(
          OpenSslError("certificate request is not signed by its own key"));
    }
  } else {
    key.reset(EVP_EC_gen("P-256"));
    if (!key) return absl::InternalError(OpenSslError("cannot generate a key"));
    BioPtr out(BIO_new(BIO_s_mem()));
    if (PEM_write_bio_PrivateKey(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
        1) {
      return absl::InternalError(OpenSslError("cannot encode the key"));
    }
    issued.key_pem = DrainBio(out.get());
  }
  ASSIGN_OR_RETURN(issued.cert_pem, IssueCertificate(key.get(), spec, impl_->cert.get(),
                                                     impl_->key.get(), &issued.serial_hex));
  RETURN_IF_ERROR(
      Record(issued.cert_pem, issued.serial_hex, spec.role + "/" + spec.name, KeyId(key.get())));
  return issued;
}

absl::StatusOr<Authority::Issued> Authority::Renew(const std::string& cert_pem, int days) {
  BioPtr in = MemoryBio(cert_pem);
  X509Ptr old(PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr));
  if (!old) return absl::InvalidArgumentError(OpenSslError("not a PEM certificate"));
  if (X509_NAME_cmp(X509_get_issuer_name(old.get()), X509_get_subject_name(impl_->cert.get())) !=
          0 ||
      X509_verify(old.get(), X509_get0_pubkey(impl_->cert.get())) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "the certificate was not issued by this root: renew it where it was issued");
  }
  ASSIGN_OR_RETURN(CertificateInfo info, InspectCertificate(cert_pem));
  if (days > 0) info.spec.days = days;
  // A key once revoked as compromised is never certified again.
  const std::string key_id = KeyId(X509_get0_pubkey(old.get()));
  ASSIGN_OR_RETURN(std::vector<IndexEntry> entries, List());
  for (const IndexEntry& e : entries) {
    if (e.key_id == key_id && KeyCompromised(e)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the key of this certificate was revoked (", e.reason, ", serial ",
                       e.serial_hex, "): issue a new certificate for a new key instead"));
    }
  }
  Issued issued;
  ASSIGN_OR_RETURN(issued.cert_pem,
                   IssueCertificate(X509_get0_pubkey(old.get()), info.spec, impl_->cert.get(),
                                    impl_->key.get(), &issued.serial_hex));
  RETURN_IF_ERROR(
      Record(issued.cert_pem, issued.serial_hex, info.spec.role + "/" + info.spec.name, key_id));
  return issued;
}

absl::Status Authority::Record(const std::string& cert_pem, const std::string& serial_hex,
                               const std::string& subject, const std::string& key_id) {
  ASSIGN_OR_RETURN(CertificateInfo info, InspectCertificate(cert_pem));
  RETURN_IF_ERROR(WriteFileDurably(impl_->Path("issued/" + serial_hex + ".pem"), cert_pem, 0644));
  ASSIGN_OR_RETURN(std::vector<IndexEntry> entries, List());
  IndexEntry entry;
  entry.serial_hex = serial_hex;
  entry.not_after_unix = info.not_after_unix;
  entry.subject = subject;
  entry.key_id = key_id;
  entries.push_back(entry);
  return SaveIndex(entries);
}

absl::StatusOr<std::vector<IndexEntry>> Authority::List() const {
  auto text = ReadFile(impl_->Path("index.tsv"));
  if (!text.ok()) return text.status();
  std::vector<IndexEntry> entries;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    ++line_no;
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    IndexEntry e;
    if (f.size() != 7 || !absl::SimpleAtoi(f[1], &e.not_after_unix) ||
        !absl::SimpleAtoi(f[3], &e.revoked_unix) || (f[2] != "V" && f[2] != "R")) {
      return absl::DataLossError(
          absl::StrCat(impl_->Path("index.tsv"), " line ", line_no, " is not an index entry"));
    }
    e.serial_hex = f[0];
    e.revoked = f[2] == "R";
    e.reason = f[4];
    e.subject = f[5];
    e.key_id = f[6];
    entries.push_back(std::move(e));
  }
  return entries;
}

absl::Status Authority::SaveIndex(const std::vector<IndexEntry>& entries) {
  std::string text;
  for (const IndexEntry& e : entries) {
    absl::StrAppend(&text, e.serial_hex, "\t", e.not_after_unix, "\t", e.revoked ? "R" : "V", "\t",
                    e.revoked_unix, "\t", e.reason, "\t", e.subject, "\t", e.key_id, "\n");
  }
  return WriteFileDurably(impl_->Path("index.tsv"), text, 0600);
}

absl::StatusOr<std::vector<std::string>> Authority::Revoke(const std::string& serial_text,
                                                           const std::string& reason, bool force) {
  if (ReasonCode(reason) < 0) {
    return absl::InvalidArgumentError(absl::StrCat("unknown reason \"", reason, "\": one of ",
                                                   absl::StrJoin(RevocationReasons(), ", ")));
  }
  const std::string serial = NormalizeSerial(serial_text);
  ASSIGN_OR_RETURN(std::vector<IndexEntry> entries, List());
  auto it = std::find_if(entries.begin(), entries.end(), [&](const IndexEntry& e) {
    return NormalizeSerial(e.serial_hex) == serial;
  });
  if (it == entries.end()) {
    return absl::NotFoundError(
        absl::StrCat("serial ", serial, " was not issued by this root (strata-pki list)"));
  }
  if (it->revoked) {
    return absl::FailedPreconditionError(
        absl::StrCat(it->subject, " (serial ", serial,
                     ") is already revoked; strata-pki crl signs the list again"));
  }
  const bool whole_key = reason == "keyCompromise" || reason == "cACompromise";
  std::vector<std::string> others;  // valid certificates for the same key
  for (const IndexEntry& e : entries) {
    if (&e != &*it && !e.key_id.empty() && e.key_id == it->key_id && !e.revoked &&
        e.not_after_unix > Now())
      others.push_back(e.serial_hex);
  }
  if (!whole_key && !others.empty() && !force) {
    return absl::FailedPreconditionError(absl::StrCat(
        it->subject, " (serial ", serial, ") shares its key with ", absl::StrJoin(others, ", "),
        " (a renewal): a same-key renewal needs no revocation, and revoking this one cuts off "
        "whatever still presents it (for an issuing CA: every agent registered before the "
        "renewal). Revoke the key with --reason keyCompromise, or give --force"));
  }
  std::vector<std::string> revoked;
  const int64_t now = Now();
  for (IndexEntry& e : entries) {
    const bool target =
        &e == &*it || (whole_key && !e.revoked && e.key_id == it->key_id && !it->key_id.empty());
    if (!target) continue;
    e.revoked = true;
    e.revoked_unix = now;
    e.reason = reason;
    revoked.push_back(e.serial_hex);
  }
  // The CRL first: a failure leaves the index as it was, and the command can
  // be run again.
  RETURN_IF_ERROR(WriteCrl(entries, 30).status());
  RETURN_IF_ERROR(SaveIndex(entries));
  return revoked;
}

absl::StatusOr<std::string> Authority::WriteCrl(int days) {
  ASSIGN_OR_RETURN(std::vector<IndexEntry> entries, List());
  return WriteCrl(entries, days);
}

absl::StatusOr<std::string> Authority::WriteCrl(const std::vector<IndexEntry>& entries, int days) {
  if (days <= 0 || days > 3650) {
    return absl::InvalidArgumentError(
        absl::StrCat("CRL validity of ", days, " days: give 1 to 3650"));
  }
  int64_t number = 1;
  const std::string number_file = impl_->Path("crlnumber");
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(number_file)), &number) ||
      number < 1) {
    return absl::DataLossError(
        absl::StrCat(number_file,
                     " does not hold a CRL number: servers refuse a CRL numbered lower than "
                     "theirs, so restore it (one more than the number in crl.pem)"));
  }
  CrlPtr crl(X509_CRL_new());
  if (X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(impl_->cert.get())) != 1) {
    return absl::InternalError(OpenSslError("cannot build the CRL"));
  }
  std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_TIME_free>> now(X509_gmtime_adj(nullptr, 0)),
      next(X509_gmtime_adj(nullptr, int64_t{days} * 86400));
  X509_CRL_set1_lastUpdate(crl.get(), now.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  for (const IndexEntry& e : entries) {
    if (!e.revoked || e.not_after_unix < Now()) continue;
    X509_REVOKED* revoked = X509_REVOKED_new();
    BIGNUM* bn = nullptr;
    if (BN_hex2bn(&bn, e.serial_hex.c_str()) == 0) {
      X509_REVOKED_free(revoked);
      return absl::DataLossError(
          absl::StrCat("index.tsv: serial \"", e.serial_hex, "\" of ", e.subject, " is not hex"));
    }
    BnPtr serial_bn(bn);
    IntPtr serial(BN_to_ASN1_INTEGER(serial_bn.get(), nullptr));
    std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_TIME_free>> when(
        ASN1_TIME_set(nullptr, static_cast<time_t>(e.revoked_unix)));
    std::unique_ptr<ASN1_ENUMERATED, Deleter<ASN1_ENUMERATED, ASN1_ENUMERATED_free>> code(
        ASN1_ENUMERATED_new());
    ASN1_ENUMERATED_set(code.get(), std::max(0, ReasonCode(e.reason)));
    if (!serial || X509_REVOKED_set_serialNumber(revoked, serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(revoked, when.get()) != 1 ||
        X509_REVOKED_add1_ext_i2d(revoked, NID_crl_reason, code.get(), 0, 0) != 1 ||
        X509_CRL_add0_revoked(crl.get(), revoked) != 1) {
      X509_REVOKED_free(revoked);
      return absl::InternalError(OpenSslError("cannot list a revoked certificate"));
    }
  }
  IntPtr crl_number(ASN1_INTEGER_new());
  ASN1_INTEGER_set_int64(crl_number.get(), number);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, impl_->cert.get(), nullptr, nullptr, crl.get(), 0);
  X509_EXTENSION* aki =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always");
  const bool ext_ok = aki != nullptr && X509_CRL_add_ext(crl.get(), aki, -1) == 1 &&
                      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0) == 1;
  X509_EXTENSION_free(aki);
  if (!ext_ok) return absl::InternalError(OpenSslError("cannot add the CRL's extensions"));
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), impl_->key.get(), EVP_sha384()) <= 0) {
    return absl::InternalError(OpenSslError("cannot sign the CRL"));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_CRL(out.get(), crl.get());
  std::string pem = DrainBio(out.get());
  // The number first: a failure in between skips a number, never reuses one.
  RETURN_IF_ERROR(WriteFileDurably(number_file, absl::StrCat(number + 1, "\n"), 0600));
  RETURN_IF_ERROR(WriteFileDurably(impl_->Path("crl.pem"), pem, 0644));
  return pem;
}

}  // namespace strata::pki
