// strata-pki: the hierarchy's certificate authority for real installs
// (deploy/pki.sh stays the throwaway development PKI). See
// docs/operations.md "Certificates" and `strata-pki --help`.

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/base/files.h"
#include "common/base/status.h"
#include "common/base/version.h"
#include "common/net/pki.h"
#include "common/net/tls.h"
#include "pki/authority.h"

namespace strata::pki {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// The passphrase of the root key: the first line of --passphrase-file, else
// asked on the terminal (twice when making a root); never from a flag,
// which other users could read in the process list.
absl::StatusOr<std::string> Passphrase(const std::string& file, bool confirm) {
  if (!file.empty()) {
    auto text = ReadFile(file);
    if (!text.ok()) return absl::NotFoundError(absl::StrCat("cannot read ", file));
    std::string line = text->substr(0, text->find('\n'));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }
  if (!isatty(STDIN_FILENO)) {
    return absl::InvalidArgumentError(
        "no terminal to ask the root key's passphrase on: give --passphrase-file FILE");
  }
  char buf[1024];
  if (EVP_read_pw_string(buf, sizeof buf, "Root key passphrase: ", confirm ? 1 : 0) != 0) {
    OPENSSL_cleanse(buf, sizeof buf);
    return absl::InvalidArgumentError("no passphrase read (or the two did not match)");
  }
  std::string out(buf);
  OPENSSL_cleanse(buf, sizeof buf);
  return out;
}

std::string DirOrEnv(const std::string& dir) {
  if (!dir.empty()) return dir;
  const char* env = std::getenv("STRATA_PKI_DIR");
  return env ? env : "";
}

absl::Status WriteNew(const std::string& path, const std::string& data, mode_t mode, bool force) {
  if (!force && FileStamp(path) != "") {
    return absl::AlreadyExistsError(absl::StrCat(path, " exists: give --force to replace it"));
  }
  return WriteFileDurably(path, data, mode);
}

std::string Date(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%d", absl::FromUnixSeconds(unix_seconds), absl::UTCTimeZone());
}

int Fail(const absl::Status& s) {
  std::cerr << "strata-pki: " << s.message() << "\n";
  return s.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailed;
}

// install: puts a renewed certificate in place on a host, atomically, after
// checking it is for the key there, chains to the CA and names the same
// role and name as the certificate it replaces.
absl::Status Install(const std::string& new_file, const std::string& dest, const std::string& key,
                     const std::string& ca, bool force) {
  ASSIGN_OR_RETURN(std::string pem, ReadFile(new_file));
  ASSIGN_OR_RETURN(CertificateInfo next, InspectCertificate(pem));
  ASSIGN_OR_RETURN(std::string key_pem, ReadFile(key));
  BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  BIO* cb = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  BIO_free(cb);
  const bool matches = pkey != nullptr && cert != nullptr && X509_check_private_key(cert, pkey);
  EVP_PKEY_free(pkey);
  X509_free(cert);
  ERR_clear_error();
  if (!matches) {
    return absl::InvalidArgumentError(
        absl::StrCat(new_file, " is not a certificate for the key in ", key));
  }
  RETURN_IF_ERROR(VerifyCertificateFile(new_file, ca));
  auto old_pem = ReadFile(dest);
  if (old_pem.ok() && !force) {
    ASSIGN_OR_RETURN(CertificateInfo old, InspectCertificate(*old_pem));
    if (old.spec.role != next.spec.role || old.spec.name != next.spec.name) {
      return absl::InvalidArgumentError(absl::StrCat(
          dest, " is ", old.spec.role, "/", old.spec.name, " and ", new_file, " is ",
          next.spec.role, "/", next.spec.name, ": give --force to change the identity"));
    }
  }
  // Written beside it with the old file's mode and owner, then renamed over
  // it: the service sees the old certificate or the new, never a mix.
  struct stat st {};
  const bool existed = ::stat(dest.c_str(), &st) == 0;
  const std::string next_file = dest + ".strata-pki-new";
  RETURN_IF_ERROR(WriteFileDurably(next_file, pem, existed ? (st.st_mode & 07777) : 0644));
  if (existed && ::chown(next_file.c_str(), st.st_uid, st.st_gid) != 0) {
    ::unlink(next_file.c_str());
    return absl::InternalError(
        absl::StrCat("cannot give ", next_file, " the owner of ", dest, "; nothing was replaced"));
  }
  if (::rename(next_file.c_str(), dest.c_str()) != 0) {
    ::unlink(next_file.c_str());
    return absl::InternalError(absl::StrCat("cannot replace ", dest, "; nothing was replaced"));
  }
  std::cout << "installed " << next.spec.role << "/" << next.spec.name << " serial "
            << next.serial_hex << " (valid until " << Date(next.not_after_unix) << ") as " << dest
            << "\nservers pick it up within tls.refresh_seconds; links reconnect with it\n";
  return absl::OkStatus();
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "strata-pki: the Strata hierarchy's certificate authority.\n"
      "Keep the folder (--dir, or STRATA_PKI_DIR) on an offline machine: it holds the root key,\n"
      "encrypted with your passphrase. Every command but `install` needs it.\n"
      "Typical run:\n"
      "  strata-pki init --dir /media/pki --name 'Contoso Strata Root'\n"
      "  strata-pki issue --dir /media/pki site CAS --dns cas.contoso.net\n"
      "  strata-pki issue --dir /media/pki issuing P01\n"
      "  strata-pki renew --dir /media/pki site-CAS.pem   (same key, new validity)\n"
      "  strata-pki revoke --dir /media/pki site-CAS.pem --reason keyCompromise\n"
      "Copy root.pem to every host as tls.ca_file and crl.pem as tls.crl_file.",
      "strata-pki"};
  app.set_version_flag("--version", std::string("strata-pki ") + kVersion);
  app.require_subcommand(1);
  std::string dir, passphrase_file;
  // Before or after the command: subcommands pass them up (fallthrough).
  app.add_option("--dir", dir, "the CA folder (default: $STRATA_PKI_DIR)");
  app.add_option("--passphrase-file", passphrase_file,
                 "read the root key's passphrase from this file's first line (default: ask on "
                 "the terminal)");
  app.fallthrough();

  std::string root_name;
  int days = 0;
  auto* init = app.add_subcommand("init", "create the root: key (encrypted), certificate, CRL");
  init->add_option("--name", root_name, "the root's common name")->required();
  init->add_option("--days", days, "validity (default 7300: 20 years)");

  std::string role, name, csr_file, out;
  std::vector<std::string> dns, ips;
  bool force = false;
  auto* issue = app.add_subcommand(
      "issue",
      "issue a certificate: ROLE is site, mp, dp or provider (server and client; give the host's "
      "--dns names and/or --ip addresses), admin (client) or issuing (a site's issuing CA, NAME "
      "= site code)");
  issue->add_option("role", role, "site, mp, dp, provider, admin or issuing")
      ->required()
      ->check(CLI::IsMember({"site", "mp", "dp", "provider", "admin", "issuing"}));
  issue->add_option("name", name, "site code (site, issuing), host or admin name")->required();
  issue->add_option("--dns", dns, "a DNS name the server is reached by (repeat)");
  issue->add_option("--ip", ips, "an IP address the server is reached by (repeat)");
  issue->add_option("--days", days, "validity (default 825; admin 365; issuing 1825)");
  issue->add_option("--csr", csr_file,
                    "certify the key of this request (made on the host) instead of making one");
  issue->add_option("--out", out, "write OUT.pem (and OUT.key) (default: ROLE-NAME)");
  issue->add_flag("--force", force, "replace existing output files");

  std::string cert_file, reason = "unspecified";
  auto* renew = app.add_subcommand(
      "renew", "issue a new certificate for the same key, role, name and SANs as CERT");
  renew->add_option("cert", cert_file, "the certificate to renew (PEM)")->required();
  renew->add_option("--days", days, "validity (default: as long as the old one)");
  renew->add_option("--out", out, "where to write it (default: replace CERT)");

  std::string target;
  auto* revoke = app.add_subcommand("revoke", "revoke a certificate and write a new CRL");
  revoke->add_option("target", target, "a certificate file or a serial (strata-pki list)")
      ->required();
  revoke
      ->add_option("--reason", reason,
                   "RFC 5280 reason; keyCompromise and cACompromise revoke the key (every "
                   "certificate for it)")
      ->check(CLI::IsMember(RevocationReasons()));
  bool force_revoke = false;
  revoke->add_flag("--force", force_revoke,
                   "revoke this serial alone though a renewal still uses its key");

  auto* crl = app.add_subcommand(
      "crl", "sign a fresh CRL (servers warn when theirs lapses; re-sign before --days pass)");
  crl->add_option("--days", days, "validity (default 30)");
  crl->add_option("--out", out, "also copy it here");

  auto* list = app.add_subcommand("list", "every certificate issued, with its status");

  std::string dest, key_file, ca_file;
  auto* install = app.add_subcommand(
      "install",
      "on a host: put a renewed certificate in place (checks key, CA and identity; atomic)");
  install->add_option("new", cert_file, "the renewed certificate")->required();
  install->add_option("--cert", dest, "the certificate file the service uses")->required();
  install->add_option("--key", key_file, "the service's key file")->required();
  install->add_option("--ca", ca_file, "the root certificate (tls.ca_file) to check it against")
      ->required();
  install->add_flag("--force", force, "allow a different role or name");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (install->parsed()) {
    absl::Status s = Install(cert_file, dest, key_file, ca_file, force);
    return s.ok() ? 0 : Fail(s);
  }
  dir = DirOrEnv(dir);
  if (dir.empty()) return Fail(absl::InvalidArgumentError("no CA folder: give --dir DIR"));

  if (init->parsed()) {
    auto pass = Passphrase(passphrase_file, true);
    if (!pass.ok()) return Fail(pass.status());
    auto authority = Authority::Create(dir, root_name, days > 0 ? days : 7300, *pass);
    if (!authority.ok()) return Fail(authority.status());
    std::cout << "root \"" << root_name << "\" created in " << dir
              << "\n  root.pem: give it to every host as tls.ca_file\n"
              << "  crl.pem:  give it to every server as tls.crl_file\n"
              << "  root.key: stays here; keep the folder offline and backed up\n";
    return 0;
  }
  if (list->parsed()) {
    // Listing needs no key: read the index directly.
    auto text = ReadFile(dir + "/index.tsv");
    if (!text.ok()) return Fail(absl::NotFoundError(dir + " holds no index.tsv: not a CA folder"));
    std::cout << "serial                            expires     subject              status\n";
    const int64_t now = std::time(nullptr);
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      std::vector<std::string> f = absl::StrSplit(line, '\t');
      if (f.size() != 7) continue;
      int64_t not_after = 0, revoked_at = 0;
      (void)absl::SimpleAtoi(f[1], &not_after);
      (void)absl::SimpleAtoi(f[3], &revoked_at);
      std::string status = f[2] == "R"       ? "revoked " + Date(revoked_at) + " " + f[4]
                           : not_after < now ? "expired"
                                             : "valid";
      std::printf("%-33s %-11s %-20s %s\n", f[0].c_str(), Date(not_after).c_str(), f[5].c_str(),
                  status.c_str());
    }
    return 0;
  }

  auto pass = Passphrase(passphrase_file, false);
  if (!pass.ok()) return Fail(pass.status());
  auto opened = Authority::Open(dir, *pass);
  if (!opened.ok()) return Fail(opened.status());
  Authority& authority = **opened;

  if (issue->parsed()) {
    CertificateSpec spec;
    spec.role = role;
    spec.name = name;
    spec.dns_names = dns;
    spec.ip_addresses = ips;
    spec.ca = role == "issuing";
    spec.server = role == "site" || role == "mp" || role == "dp" || role == "provider";
    spec.days = days > 0 ? days : role == "admin" ? 365 : role == "issuing" ? 1825 : 825;
    if (spec.server && dns.empty() && ips.empty()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "a ", role,
          " certificate is a server's: give the names clients reach it by with --dns NAME and/or "
          "--ip ADDRESS (use --dns localhost for a server reached over a unix socket)")));
    }
    if (!spec.server && (!dns.empty() || !ips.empty())) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--dns and --ip are for server certificates, not ", role)));
    }
    std::string csr;
    if (!csr_file.empty()) {
      auto text = ReadFile(csr_file);
      if (!text.ok()) return Fail(absl::NotFoundError("cannot read " + csr_file));
      csr = *text;
    }
    if (out.empty()) out = role + "-" + name;
    // Refuse before issuing, so that nothing is recorded for files not written.
    for (const std::string& path : {out + ".pem", out + ".key"}) {
      if (!force && FileStamp(path) != "")
        return Fail(absl::AlreadyExistsError(path + " exists: give --force to replace it"));
    }
    const std::string out_dir = std::filesystem::path(out).parent_path().string();
    if (::access(out_dir.empty() ? "." : out_dir.c_str(), W_OK) != 0) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("cannot write into ", out_dir.empty() ? "." : out_dir, " (--out)")));
    }
    auto issued = authority.Issue(spec, csr);
    if (!issued.ok()) return Fail(issued.status());
    if (!issued->key_pem.empty()) {
      if (absl::Status s = WriteNew(out + ".key", issued->key_pem, 0600, true); !s.ok())
        return Fail(s);
    }
    if (absl::Status s = WriteNew(out + ".pem", issued->cert_pem, 0644, true); !s.ok())
      return Fail(s);
    std::cout << "issued " << role << "/" << name << " serial " << issued->serial_hex << ": " << out
              << ".pem" << (issued->key_pem.empty() ? "" : " and " + out + ".key (0600)") << "\n";
    return 0;
  }
  if (renew->parsed()) {
    auto pem = ReadFile(cert_file);
    if (!pem.ok()) return Fail(absl::NotFoundError("cannot read " + cert_file));
    auto renewed = authority.Renew(*pem, days);
    if (!renewed.ok()) return Fail(renewed.status());
    const std::string path = out.empty() ? cert_file : out;
    if (absl::Status s = WriteFileDurably(path, renewed->cert_pem, 0644); !s.ok()) return Fail(s);
    auto info = InspectCertificate(renewed->cert_pem);
    std::cout << "renewed " << info->spec.role << "/" << info->spec.name << ": serial "
              << renewed->serial_hex << ", valid until " << Date(info->not_after_unix) << ", in "
              << path << "\non the host: strata-pki install " << path
              << " --cert CERT --key KEY --ca ca.pem\n";
    return 0;
  }
  if (revoke->parsed()) {
    std::string serial = target;
    if (auto pem = ReadFile(target); pem.ok()) {
      auto info = InspectCertificate(*pem);
      if (!info.ok()) return Fail(info.status());
      serial = info->serial_hex;
    }
    auto revoked = authority.Revoke(serial, reason, force_revoke);
    if (!revoked.ok()) return Fail(revoked.status());
    std::cout << "revoked serial " << absl::StrJoin(*revoked, ", ") << " (" << reason << "); wrote "
              << dir << "/crl.pem: copy it to every server's tls.crl_file\n";
    return 0;
  }
  if (crl->parsed()) {
    auto pem = authority.WriteCrl(days > 0 ? days : 30);
    if (!pem.ok()) return Fail(pem.status());
    if (!out.empty()) {
      if (absl::Status s = WriteFileDurably(out, *pem, 0644); !s.ok()) return Fail(s);
    }
    std::cout << "wrote " << dir << "/crl.pem" << (out.empty() ? "" : " and " + out) << "\n";
    return 0;
  }
  return kExitUsage;
}

}  // namespace strata::pki

int main(int argc, char** argv) { return strata::pki::Main(argc, argv); }
