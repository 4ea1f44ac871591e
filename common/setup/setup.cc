#include "common/setup/setup.h"

#include <grp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <memory>
#include <set>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/config.h"
#include "common/base/files.h"
#include "common/base/status.h"
#include "common/net/pki.h"
#include "common/net/revocation.h"
#include "common/net/tls.h"
#include "common/store/database.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"

ABSL_FLAG(bool, force, false, "init: overwrite an existing configuration file");

namespace strata::setup {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string Commented(const std::string& text) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    out += line.empty() ? "#\n" : absl::StrCat("# ", line, "\n");
  }
  return out;
}

bool IsSet(const Message& m, const FieldDescriptor* f) {
  return f->is_repeated() ? m.GetReflection()->FieldSize(m, f) > 0
                          : m.GetReflection()->HasField(m, f);
}

// OpenSSL's owners.
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

// Every certificate of a PEM file, in order.
absl::StatusOr<std::vector<X509Ptr>> ReadCertificates(const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> out;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(x);
  ERR_clear_error();
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no PEM certificate"));
  return out;
}

// A key file's key; a passphrase-protected key is refused, not prompted for.
absl::StatusOr<KeyPtr> ReadKey(const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  ERR_clear_error();
  if (!key) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no PEM private key, or one protected by a passphrase (servers need it clear)"));
  }
  return key;
}

// Days from now until the certificate expires (negative: expired).
int DaysLeft(X509* cert) {
  int days = 0, seconds = 0;
  ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert));
  return days;
}

}  // namespace

bool OverwriteRequested() { return absl::GetFlag(FLAGS_force); }

void DefaultTls(v1::TlsConfig* tls, const std::string& entity) {
  if (tls->ca_file().empty()) tls->set_ca_file("/etc/strata/pki/ca.pem");
  if (entity.empty()) return;
  const std::string base = "/etc/strata/pki/" + entity;
  if (tls->cert_file().empty()) tls->set_cert_file(base + ".pem");
  if (tls->key_file().empty()) tls->set_key_file(base + ".key");
}

absl::StatusOr<std::string> RenderConfig(const Message& config, const std::string& title,
                                         const std::vector<FieldDoc>& docs) {
  const auto* descriptor = config.GetDescriptor();
  std::set<std::string> documented;
  std::string text = Commented(title) + "\n";
  google::protobuf::TextFormat::Printer printer;
  for (const FieldDoc& doc : docs) {
    const FieldDescriptor* field = descriptor->FindFieldByName(doc.field);
    if (field == nullptr) {
      return absl::InternalError(
          absl::StrCat(descriptor->full_name(), " has no field \"", doc.field, "\""));
    }
    documented.insert(doc.field);
    if (!IsSet(config, field) && doc.example.empty()) continue;
    text += Commented(doc.comment);
    if (IsSet(config, field)) {
      // The message with only this field, printed.
      std::unique_ptr<Message> one(config.New());
      one->CopyFrom(config);
      for (int i = 0; i < descriptor->field_count(); ++i) {
        if (descriptor->field(i) != field)
          one->GetReflection()->ClearField(one.get(), descriptor->field(i));
      }
      std::string printed;
      printer.PrintToString(*one, &printed);
      text += printed;
    } else {
      text += Commented(absl::StrCat(doc.field, ": ", doc.example));
    }
    text += "\n";
  }
  std::vector<const FieldDescriptor*> set;
  config.GetReflection()->ListFields(config, &set);
  for (const FieldDescriptor* f : set) {
    if (!documented.count(f->name())) {
      return absl::InternalError(
          absl::StrCat("field \"", f->name(), "\" is set but not documented"));
    }
  }
  std::unique_ptr<Message> back(config.New());
  RETURN_IF_ERROR(ParseTextProto(text, "the written configuration", back.get()));
  if (!google::protobuf::util::MessageDifferencer::Equals(*back, config)) {
    return absl::InternalError("the written configuration does not read back the same");
  }
  return text;
}

absl::Status WriteConfigFile(const std::string& path, const std::string& text, bool overwrite,
                             const std::string& group) {
  struct stat st;
  if (!overwrite && ::stat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(path, " exists; give --force to replace it"));
  }
  RETURN_IF_ERROR(WriteFileDurably(path, text, 0640));
  const struct group* g = group.empty() ? nullptr : ::getgrnam(group.c_str());
  if (g != nullptr && ::geteuid() == 0 && ::chown(path.c_str(), 0, g->gr_gid) != 0) {
    return absl::InternalError(absl::StrCat("cannot give ", path, " to group ", group));
  }
  return absl::OkStatus();
}

void CheckReport::Ok(const std::string& what, const std::string& detail) {
  out_ << "ok    " << what << ": " << detail << "\n";
}
void CheckReport::Warn(const std::string& what, const std::string& detail) {
  out_ << "warn  " << what << ": " << detail << "\n";
}
void CheckReport::Fail(const std::string& what, const std::string& detail) {
  ++failures_;
  out_ << "FAIL  " << what << ": " << detail << "\n";
}
void CheckReport::Record(const std::string& what, const absl::Status& status,
                         const std::string& ok_detail) {
  if (status.ok()) {
    Ok(what, ok_detail);
  } else {
    Fail(what, std::string(status.message()));
  }
}

namespace {

// The certificate (with any chain after it in the file), its key and the
// CA that must have signed it: on success the certificate; on a failure it
// is reported under `what` (the key's own read error under its name).
X509Ptr LoadVerified(CheckReport& report, const std::string& what, const std::string& cert_file,
                     const std::string& key_file, const std::string& ca_file) {
  auto certs = ReadCertificates(cert_file);
  if (!certs.ok()) {
    report.Fail(what, std::string(certs.status().message()));
    return nullptr;
  }
  auto key = ReadKey(key_file);
  if (!key.ok()) {
    report.Fail("key " + key_file, std::string(key.status().message()));
    return nullptr;
  }
  X509Ptr cert = std::move((*certs)[0]);
  if (X509_check_private_key(cert.get(), key->get()) != 1) {
    ERR_clear_error();
    report.Fail(what, absl::StrCat("the key ", key_file, " is not its key"));
    return nullptr;
  }
  if (absl::Status s = VerifyCertificateFile(cert_file, ca_file); !s.ok()) {
    report.Fail(what, std::string(s.message()));
    return nullptr;
  }
  return cert;
}

}  // namespace

void CheckCertificate(CheckReport& report, const v1::TlsConfig& tls, const std::string& role,
                      const std::string& name) {
  const std::string what = "certificate " + tls.cert_file();
  X509Ptr cert = LoadVerified(report, what, tls.cert_file(), tls.key_file(), tls.ca_file());
  if (!cert) return;
  auto id = IdentityFromCert(cert.get());
  if (!id.ok()) return report.Fail(what, std::string(id.status().message()));
  if (id->role != role || (!name.empty() && id->name != name)) {
    return report.Fail(what, absl::StrCat("names ", id->ToString(), "; this needs OU=", role,
                                          name.empty() ? "" : ", CN=" + name));
  }
  const int days = DaysLeft(cert.get());
  const std::string detail = absl::StrCat(id->ToString(), ", key matches, trusted by ",
                                          tls.ca_file(), ", ", days, " days left");
  if (days < 30) {
    report.Warn(what, detail + " (renew it: strata-pki renew)");
  } else {
    report.Ok(what, detail);
  }
  if (tls.crl_file().empty()) return;
  const std::string crl_what = "CRL " + tls.crl_file();
  auto list = RevocationList::Open(tls.crl_file(), tls.ca_file());
  if (!list.ok()) return report.Fail(crl_what, std::string(list.status().message()));
  if (absl::Status own = (*list)->CheckCertificate(cert.get()); !own.ok()) {
    return report.Fail(crl_what,
                       absl::StrCat("this server's own certificate is revoked: ", own.message()));
  }
  const int64_t left = (static_cast<int64_t>((*list)->next_update()) - std::time(nullptr)) / 86400;
  const std::string crl_detail =
      absl::StrCat((*list)->revoked_count(), " revoked, next update due in ", left, " days");
  if (left < 7) {
    report.Warn(crl_what, crl_detail + " (strata-pki crl, then copy it here)");
  } else {
    report.Ok(crl_what, crl_detail);
  }
}

void CheckIssuingCa(CheckReport& report, const v1::TlsConfig& issuing, const std::string& root_ca) {
  const std::string what = "issuing CA " + issuing.cert_file();
  X509Ptr cert = LoadVerified(report, what, issuing.cert_file(), issuing.key_file(), root_ca);
  if (!cert) return;
  if (X509_check_ca(cert.get()) <= 0) return report.Fail(what, "not a CA certificate");
  report.Ok(what, absl::StrCat("key matches, signed by ", root_ca, ", ", DaysLeft(cert.get()),
                               " days left"));
}

void CheckDatabase(CheckReport& report, const std::string& conninfo, bool need_logical,
                   bool need_schema) {
  const std::string what = "database";
  auto conn = store::Connection::Open(conninfo);
  if (!conn.ok()) return report.Fail(what, std::string(conn.status().message()));
  auto version = (*conn)->Exec("SHOW server_version");
  auto level = (*conn)->Exec("SHOW wal_level");
  auto schema = (*conn)->Exec("SELECT to_regclass('sites') IS NOT NULL");
  if (!version.ok() || !level.ok() || !schema.ok()) {
    return report.Fail(what, "connected, but cannot read its settings");
  }
  std::string detail = absl::StrCat("PostgreSQL ", version->GetString(0, 0),
                                    ", wal_level = ", level->GetString(0, 0));
  if (need_logical && level->GetString(0, 0) != "logical") {
    return report.Fail(what, detail +
                                 "; site servers read their changes from the WAL: set "
                                 "wal_level = logical in postgresql.conf and restart it");
  }
  if (need_logical) {
    // A site server streams its WAL (REPLICATION) and marks applied rows
    // with replication origins (README, "PostgreSQL").
    auto rights = (*conn)->Exec(
        "SELECT rolsuper OR rolreplication, "
        "has_function_privilege('pg_replication_origin_session_setup(text)', 'EXECUTE'), "
        "current_setting('max_replication_slots')::int, current_setting('max_wal_senders')::int "
        "FROM pg_roles WHERE rolname = current_user");
    if (!rights.ok() || rights->empty()) return report.Fail(what, "cannot read the role's rights");
    if (rights->GetString(0, 0) != "t") {
      return report.Fail(what,
                         detail + "; the role lacks REPLICATION (ALTER ROLE ... REPLICATION)");
    }
    if (rights->GetString(0, 1) != "t") {
      return report.Fail(what, detail +
                                   "; the role may not use replication origins (GRANT "
                                   "EXECUTE on the pg_replication_origin_* functions)");
    }
    const int64_t slots = rights->GetInt(0, 2), senders = rights->GetInt(0, 3);
    absl::StrAppend(&detail, ", max_replication_slots = ", slots, ", max_wal_senders = ", senders);
    if (slots < 4 || senders < 4) {
      report.Warn(what,
                  "max_replication_slots and max_wal_senders must cover the site's links + 2");
    }
  }
  const bool has_schema = schema->GetString(0, 0) == "t";
  if (need_schema && !has_schema) {
    return report.Fail(what, detail +
                                 "; no site schema: start the site server on this "
                                 "database first (it migrates the schema)");
  }
  report.Ok(what, detail + (has_schema ? ", site schema present"
                                       : ", empty (the site server "
                                         "creates its schema)"));
}

void CheckServer(CheckReport& report, const std::string& what, const std::string& address,
                 const v1::TlsConfig& tls) {
  const std::string label = absl::StrCat(what, " ", address);
  auto channel = MakeChannel(address, tls);
  if (!channel.ok()) return report.Fail(label, std::string(channel.status().message()));
  if (absl::Status s = CheckServing(*channel, 10000); !s.ok()) {
    return report.Fail(label, s.code() == absl::StatusCode::kFailedPrecondition
                                  ? std::string(s.message())
                                  : absl::StrCat("unreachable or refused: ", s.message()));
  }
  report.Ok(label, tls.cert_file().empty() ? "reachable over TLS, serving"
                                           : "reachable over mutual TLS, serving");
}

void CheckFolder(CheckReport& report, const std::string& what, const std::string& path) {
  const std::string label = absl::StrCat(what, " ", path);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return report.Fail(label, "not a folder");
    if (::access(path.c_str(), W_OK | X_OK) != 0) {
      return report.Fail(label, "not writable by this user (run check as the service's user)");
    }
    return report.Ok(label, "writable");
  }
  const size_t slash = path.find_last_of('/');
  const std::string parent = slash == std::string::npos ? "."
                             : slash == 0               ? "/"
                                                        : path.substr(0, slash);
  if (::access(parent.c_str(), W_OK | X_OK) == 0) return report.Ok(label, "will be created");
  report.Fail(label, "does not exist, and its parent is not writable by this user");
}

void CheckReadable(CheckReport& report, const std::string& what, const std::string& path) {
  const std::string label = absl::StrCat(what, " ", path);
  if (::access(path.c_str(), R_OK) != 0) {
    return report.Fail(label, "cannot be read by this user (run check as the service's user)");
  }
  report.Ok(label, "readable");
}

void CheckMetrics(CheckReport& report, const v1::MetricsConfig& metrics) {
  if (!metrics.credentials_file().empty()) {
    CheckReadable(report, "metrics credentials", metrics.credentials_file());
  }
}

}  // namespace strata::setup
