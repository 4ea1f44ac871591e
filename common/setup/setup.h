#pragma once

// Setting up a Strata server or agent on a host: the `init` and `check`
// commands every binary has.
//
//   strata-mp init /etc/strata/mp.conf --name P01.mp1 --site ... [--force]
//     writes a commented configuration from the flags' answers, after
//     validating it as the binary would at start.
//   strata-mp check --config /etc/strata/mp.conf
//     validates a configuration and what it points at (certificate and key,
//     database, the parent or site server, folders) without starting; one
//     line per check, exit code 0 only when every check passed.
//
// Each role says what its file holds (FieldDoc) and what to check
// (RoleSetup::check); the rest is here.

#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "strata/v1/config.pb.h"

namespace strata::setup {

// A top-level field of a configuration file written by `init`: the comment
// above it, and, for a field the answers left unset, an example value
// written commented out ("# field: example"). An empty example leaves an
// unset field out.
struct FieldDoc {
  std::string field;
  std::string comment;
  std::string example;
};

// The commented text of `config`: `title` as a header comment, then each
// documented field in order. Fails if a doc names no field of the message,
// or if a set field has no doc (it would be lost), or if the text does not
// parse back to `config`.
absl::StatusOr<std::string> RenderConfig(const google::protobuf::Message& config,
                                         const std::string& title,
                                         const std::vector<FieldDoc>& docs);

// Writes `text` to `path` atomically (a temporary file, fsync, rename), mode
// 0640, group `group` when it exists and this process may give it (root:
// the service's own group, so that it reads its file and other services on
// the host do not). AlreadyExists when the file exists and `overwrite` is
// false.
absl::Status WriteConfigFile(const std::string& path, const std::string& text, bool overwrite,
                             const std::string& group = "");

// The lines of `check`.
class CheckReport {
 public:
  explicit CheckReport(std::ostream& out) : out_(out) {}
  void Ok(const std::string& what, const std::string& detail);
  void Warn(const std::string& what, const std::string& detail);
  void Fail(const std::string& what, const std::string& detail);
  // Ok with `ok_detail`, or Fail with the status's message.
  void Record(const std::string& what, const absl::Status& status, const std::string& ok_detail);
  int failures() const { return failures_; }

 private:
  std::ostream& out_;
  int failures_ = 0;
};

// The certificate, key and CA of `tls`: readable, the key matches the
// certificate, the certificate is signed by the CA (or a chain in
// cert_file up to it), valid now (a warning under 30 days left), and names
// OU=`role` and, unless `name` is empty, CN=`name`. With tls.crl_file: the
// CRL verifies against the CA, does not list this certificate, and is not
// about to lapse (a warning under 7 days).
void CheckCertificate(CheckReport& report, const v1::TlsConfig& tls, const std::string& role,
                      const std::string& name);
// A site's issuing CA (signs client certificates): the pair matches and is
// a CA certificate signed by the hierarchy's root.
void CheckIssuingCa(CheckReport& report, const v1::TlsConfig& issuing, const std::string& root_ca);
// Connects to PostgreSQL and reports its version. With `need_logical`,
// wal_level must be logical (site servers read their changes from the WAL).
// With `need_schema`, the site's schema must be there (a site server has
// run on it).
void CheckDatabase(CheckReport& report, const std::string& conninfo, bool need_logical,
                   bool need_schema);
// Calls the gRPC health service of the server at `address` over mutual TLS
// with `tls`'s certificate (none if cert_file is empty): reachable,
// handshake accepted, serving.
void CheckServer(CheckReport& report, const std::string& what, const std::string& address,
                 const v1::TlsConfig& tls);
// A folder the process writes: exists (or its parent does, to be created)
// and is writable by the user running `check`.
void CheckFolder(CheckReport& report, const std::string& what, const std::string& path);
// A file the process reads.
void CheckReadable(CheckReport& report, const std::string& what, const std::string& path);
// The metrics endpoint's credentials file, when one is named.
void CheckMetrics(CheckReport& report, const v1::MetricsConfig& metrics);

template <typename Config>
struct RoleSetup {
  std::string title;  // the header of a written file
  std::string group;  // the service's group (the packages' system user), "" for root's
  std::vector<FieldDoc> docs;
  // `init`: fills what the answers left out with the packaged layout's
  // defaults (/etc/strata/pki/..., /var/lib/strata/...).
  std::function<void(Config&)> defaults;
  // Everything `check` looks at beyond validation.
  std::function<void(const Config&, CheckReport&)> check;
};

// `init` defaults for the packaged layout: the hierarchy root CA at
// /etc/strata/pki/ca.pem and, with `entity` ("mp-P01.mp1"), the
// certificate and key /etc/strata/pki/ENTITY.pem and .key; only where the
// answers left them empty.
void DefaultTls(v1::TlsConfig* tls, const std::string& entity);

// `--force` for `init`.
bool OverwriteRequested();

// Runs `init FILE` or `check` when `args` (the positional arguments after
// the program name) start with one; nullopt otherwise. `load` builds the
// configuration from the flags (and --config: for `init`, an existing file
// to start from), `validate` is the binary's own.
template <typename Config>
std::optional<int> RunSetupCommand(const std::string& program, const std::vector<char*>& args,
                                   const std::function<absl::StatusOr<Config>()>& load,
                                   const std::function<absl::Status(const Config&)>& validate,
                                   const RoleSetup<Config>& role) {
  if (args.empty()) return std::nullopt;
  const std::string command = args[0];
  if (command != "init" && command != "check") return std::nullopt;
  if ((command == "init" && args.size() != 2) || (command == "check" && args.size() != 1)) {
    std::cerr << program << ": usage: " << program
              << (command == "init" ? " init FILE [flags]" : " check --config FILE") << "\n";
    return 2;
  }
  absl::StatusOr<Config> config = load();
  if (!config.ok()) {
    std::cerr << program << ": " << config.status().message() << "\n";
    return 2;
  }
  if (command == "init") {
    if (role.defaults) role.defaults(*config);
    if (absl::Status s = validate(*config); !s.ok()) {
      std::cerr << program << ": init: " << s.message() << " (give it as a flag; see --help)\n";
      return 2;
    }
    absl::StatusOr<std::string> text = RenderConfig(*config, role.title, role.docs);
    absl::Status s = text.ok() ? WriteConfigFile(args[1], *text, OverwriteRequested(), role.group)
                               : text.status();
    if (!s.ok()) {
      std::cerr << program << ": init: " << s.message() << "\n";
      return s.code() == absl::StatusCode::kAlreadyExists ? 2 : 1;
    }
    std::cout << "wrote " << args[1] << "; check it with: " << program << " check --config "
              << args[1] << "\n";
    return 0;
  }
  CheckReport report(std::cout);
  report.Record("configuration", validate(*config), "valid");
  role.check(*config, report);
  if (report.failures() > 0) {
    std::cout << report.failures() << " check(s) failed\n";
    return 1;
  }
  std::cout << "all checks passed\n";
  return 0;
}

}  // namespace strata::setup
