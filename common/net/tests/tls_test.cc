#include "common/net/tls.h"

#include "common/net/pki.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>

namespace {

// Makes (once per run) a development PKI with deploy/pki.sh.
std::string Pki() {
  static std::string dir = [] {
    std::string d =
        std::filesystem::temp_directory_path() / ("strata-net-test-" + std::to_string(getpid()));
    std::string cmd = std::string(STRATA_SOURCE_DIR) + "/deploy/pki.sh " + d +
                      " site/P01 admin/alice issuing/P01";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return d;
  }();
  return dir;
}

}  // namespace

TEST_CASE("the peer identity is the certificate's subject OU and CN") {
  auto pem = strata::ReadFile(Pki() + "/site-P01.pem");
  REQUIRE(pem.ok());
  auto id = strata::IdentityFromPem(*pem);
  REQUIRE(id.ok());
  REQUIRE(id->role == "site");
  REQUIRE(id->name == "P01");
  auto admin = strata::IdentityFromPem(*strata::ReadFile(Pki() + "/admin-alice.pem"));
  REQUIRE(admin->ToString() == "admin/alice");
}

TEST_CASE("a certificate without a Strata role is refused as Unauthenticated") {
  // The CA's own certificate has OU=ca and a CN, so it parses; garbage does not.
  auto garbage =
      strata::IdentityFromPem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  REQUIRE(garbage.status().code() == absl::StatusCode::kUnauthenticated);
}

TEST_CASE("missing or non-PEM TLS files give a clear InvalidArgument") {
  strata::v1::TlsConfig tls;
  tls.set_ca_file(Pki() + "/ca.pem");
  tls.set_cert_file("/nonexistent/p01.pem");
  tls.set_key_file(Pki() + "/site-P01.key");
  auto creds = strata::MakeServerCredentials(tls);
  REQUIRE(creds.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE_THAT(std::string(creds.status().message()), Catch::Contains("/nonexistent/p01.pem"));

  tls.set_cert_file(Pki() + "/site-P01.key.missing");
  tls.set_ca_file("/etc/hostname");
  auto chan = strata::MakeChannelCredentials(tls);
  REQUIRE(chan.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE_THAT(std::string(chan.status().message()), Catch::Contains("not PEM"));
}

TEST_CASE("absl and gRPC statuses map code for code") {
  auto g = strata::ToGrpcStatus(absl::PermissionDeniedError("no"));
  REQUIRE(g.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  REQUIRE(g.error_message() == "no");
  auto a = strata::FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  REQUIRE(a.code() == absl::StatusCode::kUnavailable);
  REQUIRE(strata::ToGrpcStatus(absl::OkStatus()).ok());
}

TEST_CASE("a site's issuing CA cannot mint anything but agents") {
  auto ca = strata::IssuingCa::Load(Pki() + "/issuing-P01.pem", Pki() + "/issuing-P01.key");
  REQUIRE(ca.ok());
  auto key = strata::MakeKeyAndCsr("mallory");
  REQUIRE(key.ok());
  auto admin = (*ca)->Sign(key->csr_pem, "admin", "mallory", 30);
  REQUIRE(admin.ok());
  auto id = strata::IdentityFromPem(admin->chain_pem);
  REQUIRE(id.status().code() == absl::StatusCode::kUnauthenticated);
  CHECK_THAT(std::string(id.status().message()), Catch::Contains("issuing CA"));
  auto agent = (*ca)->Sign(key->csr_pem, "agent", "00000000-0000-0000-0000-000000000001", 30);
  REQUIRE(agent.ok());
  CHECK(strata::IdentityFromPem(agent->chain_pem).ok());
}
