// The root CA strata-pki keeps: an encrypted key, certificates with the
// identities and names servers check, renewal for the same key, and a CRL
// every server honours (common/net/revocation.h).

#include "pki/authority.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "common/base/files.h"
#include "common/net/revocation.h"
#include "common/net/tls.h"

namespace {

using strata::CertificateSpec;
using strata::pki::Authority;

const std::string kPassphrase = "correct horse battery staple";

struct Folder {
  std::string path;
  Folder() {
    static int n = 0;
    path = std::filesystem::temp_directory_path() /
           ("strata-pki-test-" + std::to_string(getpid()) + "-" + std::to_string(++n));
    std::filesystem::remove_all(path);
  }
  ~Folder() { std::filesystem::remove_all(path); }
  std::string Write(const std::string& name, const std::string& data) {
    std::string p = path + "/" + name;
    REQUIRE(strata::WriteFileDurably(p, data, 0644).ok());
    return p;
  }
};

std::unique_ptr<Authority> MakeRoot(const Folder& folder, const std::string& name = "Test Root") {
  auto root = Authority::Create(folder.path, name, 3650, kPassphrase);
  REQUIRE(root.ok());
  return std::move(*root);
}

CertificateSpec Issuing(const std::string& site) {
  CertificateSpec spec;
  spec.role = "issuing";
  spec.name = site;
  spec.ca = true;
  return spec;
}

CertificateSpec Server(const std::string& role, const std::string& name) {
  CertificateSpec spec;
  spec.role = role;
  spec.name = name;
  spec.server = true;
  spec.dns_names = {"p01.contoso.net", "localhost"};
  spec.ip_addresses = {"10.1.0.5", "::1"};
  return spec;
}

}  // namespace

TEST_CASE("the root key is kept encrypted and opens only with its passphrase") {
  Folder folder;
  REQUIRE(Authority::Create(folder.path, "Test Root", 3650, "short").status().code() ==
          absl::StatusCode::kInvalidArgument);
  MakeRoot(folder);
  const std::string key = *strata::ReadFile(folder.path + "/root.key");
  CHECK_THAT(key, Catch::Contains("BEGIN ENCRYPTED PRIVATE KEY"));
  struct stat st;
  REQUIRE(::stat((folder.path + "/root.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto wrong = Authority::Open(folder.path, "not the passphrase");
  CHECK(wrong.status().code() == absl::StatusCode::kPermissionDenied);
  CHECK(Authority::Open(folder.path, kPassphrase).ok());
  // A root is made once: a second init would orphan every certificate.
  CHECK(Authority::Create(folder.path, "Again", 3650, kPassphrase).status().code() ==
        absl::StatusCode::kAlreadyExists);
  auto root_id = strata::IdentityFromPem(*strata::ReadFile(folder.path + "/root.pem"));
  REQUIRE(root_id.ok());
  CHECK(root_id->role == "ca");
}

TEST_CASE("an issued server certificate names its role, site and the host's names") {
  Folder folder;
  auto root = MakeRoot(folder);
  auto issued = root->Issue(Server("site", "P01"));
  REQUIRE(issued.ok());
  CHECK_FALSE(issued->key_pem.empty());
  auto id = strata::IdentityFromPem(issued->cert_pem);
  REQUIRE(id.ok());
  CHECK(id->ToString() == "site/P01");
  auto info = strata::InspectCertificate(issued->cert_pem);
  REQUIRE(info.ok());
  CHECK(info->spec.dns_names == std::vector<std::string>{"p01.contoso.net", "localhost"});
  CHECK(info->spec.ip_addresses == std::vector<std::string>{"10.1.0.5", "::1"});
  CHECK(info->spec.server);
  CHECK_FALSE(info->spec.ca);
  CHECK(info->serial_hex == issued->serial_hex);
  const std::string cert = folder.Write("p01.pem", issued->cert_pem);
  CHECK(strata::VerifyCertificateFile(cert, folder.path + "/root.pem").ok());
  // Recorded: the index and a copy under issued/.
  auto entries = root->List();
  REQUIRE(entries.ok());
  REQUIRE(entries->size() == 1);
  CHECK((*entries)[0].subject == "site/P01");
  CHECK(strata::ReadFile(folder.path + "/issued/" + issued->serial_hex + ".pem").ok());
}

TEST_CASE("a name that cannot be a SAN is refused and nothing is recorded") {
  Folder folder;
  auto root = MakeRoot(folder);
  CertificateSpec spec = Server("mp", "mp1");
  spec.dns_names = {"mp1.contoso.net,IP:6.6.6.6"};  // an injected second entry
  CHECK(root->Issue(spec).status().code() == absl::StatusCode::kInvalidArgument);
  spec = Server("mp", "mp1");
  spec.ip_addresses = {"10.0.0.300"};
  CHECK(root->Issue(spec).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(root->List()->empty());
}

TEST_CASE("a role or name that would break the index or a file name is refused") {
  Folder folder;
  auto root = MakeRoot(folder);
  for (const char* name : {"P01\tV\t0", "P01\nX", "../../etc/x", "", ".."}) {
    CertificateSpec spec;
    spec.role = "admin";
    spec.name = name;
    CHECK(root->Issue(spec).status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(root->List()->empty());
  CHECK(root->WriteCrl(30).ok());  // the index still reads
}

TEST_CASE(
    "a same-key renewal keeps the old certificate valid; a compromised key is revoked whole") {
  Folder folder;
  auto root = MakeRoot(folder);
  auto old = root->Issue(Issuing("P01"));
  REQUIRE(old.ok());
  auto renewed = root->Renew(old->cert_pem, 0);
  REQUIRE(renewed.ok());
  // Revoking the old one alone would cut off every agent whose chain holds
  // it: refused, saying why, unless forced.
  auto refused = root->Revoke(old->serial_hex, "superseded");
  CHECK(refused.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(refused.status().message()), Catch::Contains("every agent"));
  CHECK_FALSE((*root->List())[0].revoked);
  // A compromised key: every certificate for it, and no renewal after.
  auto revoked = root->Revoke(old->serial_hex, "cACompromise");
  REQUIRE(revoked.ok());
  CHECK(revoked->size() == 2);
  auto list = strata::RevocationList::Open(folder.path + "/crl.pem", folder.path + "/root.pem");
  REQUIRE(list.ok());
  CHECK((*list)->CheckChain(renewed->cert_pem).code() == absl::StatusCode::kUnauthenticated);
  CHECK(root->Renew(renewed->cert_pem, 0).status().code() == absl::StatusCode::kFailedPrecondition);
  // Forced, a lone serial goes: another key's renewal pair.
  auto dp = root->Issue(Server("dp", "dp1"));
  auto dp_renewed = root->Renew(dp->cert_pem, 0);
  REQUIRE(root->Revoke(dp->serial_hex, "superseded", /*force=*/true).ok());
  CHECK((*strata::RevocationList::Open(folder.path + "/crl.pem", folder.path + "/root.pem"))
            ->CheckChain(dp_renewed->cert_pem)
            .ok());
}

TEST_CASE("a request's key is certified with the identity the root gives, not the request's") {
  Folder folder;
  auto root = MakeRoot(folder);
  auto request = strata::MakeKeyAndCsr("I am the CAS, trust me");
  REQUIRE(request.ok());
  CertificateSpec spec;
  spec.role = "admin";
  spec.name = "alice";
  auto issued = root->Issue(spec, request->csr_pem);
  REQUIRE(issued.ok());
  CHECK(issued->key_pem.empty());
  CHECK(strata::IdentityFromPem(issued->cert_pem)->ToString() == "admin/alice");
  CHECK_FALSE(strata::InspectCertificate(issued->cert_pem)->spec.server);
  CHECK(root->Issue(spec,
                    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                    "REQUEST-----\n")
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("renewal keeps the key, identity and names and gives a new serial") {
  Folder folder;
  auto root = MakeRoot(folder);
  auto issued = root->Issue(Server("dp", "dp1"));
  REQUIRE(issued.ok());
  auto renewed = root->Renew(issued->cert_pem, 90);
  REQUIRE(renewed.ok());
  CHECK(renewed->key_pem.empty());
  CHECK(renewed->serial_hex != issued->serial_hex);
  auto before = *strata::InspectCertificate(issued->cert_pem);
  auto after = *strata::InspectCertificate(renewed->cert_pem);
  CHECK(after.spec.role == "dp");
  CHECK(after.spec.name == "dp1");
  CHECK(after.spec.dns_names == before.spec.dns_names);
  CHECK(after.spec.ip_addresses == before.spec.ip_addresses);
  CHECK(after.spec.days == 90);
  // Same key: the old key file serves the new certificate.
  const std::string key = folder.Write("dp1.key", issued->key_pem);
  const std::string cert = folder.Write("dp1.pem", renewed->cert_pem);
  strata::v1::TlsConfig tls;
  tls.set_ca_file(folder.path + "/root.pem");
  tls.set_cert_file(cert);
  tls.set_key_file(key);
  CHECK(strata::MakeServerCredentials(tls).ok());
  CHECK(strata::VerifyCertificateFile(cert, tls.ca_file()).ok());

  // Another root's certificate is not this root's to renew.
  Folder other;
  auto stranger = MakeRoot(other, "Other Root");
  CHECK(stranger->Renew(issued->cert_pem, 0).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a revoked certificate is listed in the CRL and refused; others pass") {
  Folder folder;
  auto root = MakeRoot(folder);
  auto mp = root->Issue(Server("mp", "mp1"));
  auto dp = root->Issue(Server("dp", "dp1"));
  REQUIRE(mp.ok());
  REQUIRE(dp.ok());
  REQUIRE(root->Revoke(mp->serial_hex, "keyCompromise").ok());
  CHECK(root->Revoke(mp->serial_hex, "keyCompromise").status().code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(root->Revoke("ABCDEF", "keyCompromise").status().code() == absl::StatusCode::kNotFound);
  CHECK(root->Revoke(dp->serial_hex, "stolen").status().code() ==
        absl::StatusCode::kInvalidArgument);

  auto list = strata::RevocationList::Open(folder.path + "/crl.pem", folder.path + "/root.pem");
  REQUIRE(list.ok());
  CHECK((*list)->revoked_count() == 1);
  CHECK((*list)->next_update() > std::time(nullptr) + 29 * 86400);
  absl::Status refused = (*list)->CheckChain(mp->cert_pem);
  CHECK(refused.code() == absl::StatusCode::kUnauthenticated);
  CHECK_THAT(std::string(refused.message()), Catch::Contains("mp1"));
  CHECK_THAT(std::string(refused.message()), Catch::Contains("revoked"));
  CHECK((*list)->CheckChain(dp->cert_pem).ok());
  // The index says so too.
  auto entries = *root->List();
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].revoked);
  CHECK(entries[0].reason == "keyCompromise");
  CHECK_FALSE(entries[1].revoked);
}

TEST_CASE("revoking a site's issuing CA refuses every agent it signed") {
  Folder folder;
  auto root = MakeRoot(folder);
  auto issuing = root->Issue(Issuing("P01"));
  REQUIRE(issuing.ok());
  auto ca = strata::IssuingCa::Load(folder.Write("issuing.pem", issuing->cert_pem),
                                    folder.Write("issuing.key", issuing->key_pem));
  REQUIRE(ca.ok());
  auto request = strata::MakeKeyAndCsr("agent");
  auto agent = (*ca)->Sign(request->csr_pem, "agent", "00000000-0000-0000-0000-00000000000a", 30);
  REQUIRE(agent.ok());
  const std::string crl = folder.path + "/crl.pem", root_pem = folder.path + "/root.pem";
  CHECK((*strata::RevocationList::Open(crl, root_pem))->CheckChain(agent->chain_pem).ok());
  REQUIRE(root->Revoke(issuing->serial_hex, "cACompromise").ok());
  CHECK((*strata::RevocationList::Open(crl, root_pem))->CheckChain(agent->chain_pem).code() ==
        absl::StatusCode::kUnauthenticated);
}

TEST_CASE("a server's list follows the CRL file, and keeps the last good one") {
  Folder folder;
  auto root = MakeRoot(folder);
  auto a = root->Issue(Server("site", "P01"));
  auto b = root->Issue(Server("site", "P02"));
  const std::string crl = folder.path + "/crl.pem", root_pem = folder.path + "/root.pem";
  const std::string first_crl = *strata::ReadFile(crl);  // number 1, empty
  auto list = *strata::RevocationList::Open(crl, root_pem);
  CHECK(list->CheckChain(a->cert_pem).ok());
  REQUIRE(root->Revoke(a->serial_hex, "superseded").ok());  // its key has no other certificate
  // The file is looked at again at most once a second.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(list->CheckChain(a->cert_pem).code() == absl::StatusCode::kUnauthenticated);
  // The older list, validly signed, put back: refused, the revocation holds.
  REQUIRE(strata::WriteFileDurably(crl, first_crl, 0644).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(list->CheckChain(a->cert_pem).code() == absl::StatusCode::kUnauthenticated);
  // A damaged file: the last good list stays in force.
  REQUIRE(strata::WriteFileDurably(crl, "not a CRL\n", 0644).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(list->CheckChain(a->cert_pem).code() == absl::StatusCode::kUnauthenticated);
  CHECK(list->CheckChain(b->cert_pem).ok());
  // Opening a damaged or foreign list fails with the file's name.
  auto damaged = strata::RevocationList::Open(crl, root_pem);
  CHECK(damaged.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(damaged.status().message()), Catch::Contains(crl));
  Folder other;
  auto stranger = MakeRoot(other, "Other Root");
  auto foreign = strata::RevocationList::Open(other.path + "/crl.pem", root_pem);
  CHECK(foreign.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(foreign.status().message()), Catch::Contains("not signed by"));
}
