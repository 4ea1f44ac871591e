// Every server's front door: which require a client certificate at the TLS
// handshake, health everywhere, reflection at the MP, and refusals of other
// roles' certificates at the provider on record.
#include <catch2/catch.hpp>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/net/tls.h"
#include "strata/v1/admin/administrators.grpc.pb.h"
#include "tests/fixture/admin_fixture.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/site_fixture.h"

using namespace strata;
using namespace strata::testing;

namespace {

// gRPC health of `address` ("SERVING", or the call's error), with or
// without a client certificate (admin alice's).
std::string Health(const std::string& address, bool with_certificate) {
  v1::TlsConfig tls;
  tls.set_ca_file(TestPki() + "/ca.pem");
  if (with_certificate) {
    tls.set_cert_file(TestPki() + "/admin-alice.pem");
    tls.set_key_file(TestPki() + "/admin-alice.key");
  }
  auto channel = MakeChannel(address, tls);
  REQUIRE(channel.ok());
  absl::Status s = CheckServing(*channel, 10000);
  if (s.ok()) return "SERVING";
  return absl::StrCat("error ", static_cast<int>(s.code()), ": ", s.message());
}

}  // namespace

TEST_CASE(
    "servers but the MP refuse a TLS client without a certificate at the handshake; every "
    "server answers health; refusals of other roles' certificates are audited",
    "[admin]") {
  TempDir dir;
  SiteProcess cas("CAS", v1::SITE_TYPE_CAS, dir, "");
  cas.Start();
  SiteProcess p01("P01", v1::SITE_TYPE_PRIMARY, dir, cas.address());
  p01.Start();
  MpProcess mp("P01.mp1", dir, p01.address());
  mp.Start();
  ProviderProcess pv("CAS", dir, cas.db(), cas.address(), "alice");
  pv.Start();

  // With a certificate, every server answers health.
  CHECK(Health(cas.address(), true) == "SERVING");
  CHECK(Health(p01.address(), true) == "SERVING");
  CHECK(Health(pv.address(), true) == "SERVING");
  CHECK(Health(mp.address(), true) == "SERVING");
  // Without one, only the MP (agents register before they hold one): the
  // provider and the site servers end the TLS handshake, so not even health
  // or reflection answers (Unavailable: no connection).
  CHECK(Health(mp.address(), false) == "SERVING");
  CHECK_THAT(Health(pv.address(), false), Catch::StartsWith("error 14"));
  CHECK_THAT(Health(cas.address(), false), Catch::StartsWith("error 14"));
  CHECK_THAT(Health(p01.address(), false), Catch::StartsWith("error 14"));
  CHECK(cas.db().ScalarInt("SELECT count(*) FROM audit_log") == 1);  // the bootstrap only

  // A site server's certificate used as an administrator's: refused, and on
  // record like every other refusal.
  v1::TlsConfig site_tls;
  site_tls.set_ca_file(TestPki() + "/ca.pem");
  site_tls.set_cert_file(TestPki() + "/site-P01.pem");
  site_tls.set_key_file(TestPki() + "/site-P01.key");
  auto channel = MakeChannel(pv.address(), site_tls);
  REQUIRE(channel.ok());
  auto stub = v1::AdministratorService::NewStub(*channel);
  grpc::ClientContext ctx;
  v1::Administrator me;
  grpc::Status s = stub->WhoAmI(&ctx, v1::WhoAmIRequest(), &me);
  CHECK(s.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK_THAT(s.error_message(), Catch::Contains("site/P01"));
  CHECK(cas.db().Scalar("SELECT admin || ' ' || action || ' ' || outcome FROM audit_log WHERE "
                        "outcome = 'denied'") == "site/P01 WhoAmI denied");
  CHECK(pv.LogText().find("provider.denied admin=site/P01") != std::string::npos);
  // Another within the minute is logged, not audited again: certificates
  // that are not administrators' (every agent holds one) cannot flood the
  // audit log, which replicates to the CAS.
  grpc::ClientContext again;
  CHECK(stub->WhoAmI(&again, v1::WhoAmIRequest(), &me).error_code() ==
        grpc::StatusCode::PERMISSION_DENIED);
  CHECK(cas.db().ScalarInt("SELECT count(*) FROM audit_log WHERE outcome = 'denied'") == 1);
  CHECK(pv.LogText().find("audited=false") != std::string::npos);

  // The MP answers reflection too, for operators (an independent client).
  const char* modules = std::getenv("STRATA_NODE_MODULES");
  REQUIRE(modules != nullptr);
  std::string out = RunCommand(
      absl::StrCat("NODE_PATH='", modules, "' node '", SourceDir(), "/tests/node/client.js' '",
                   mp.address(), "' '", TestPki(), "/ca.pem' '", TestPki(), "/admin-alice.pem' '",
                   TestPki(), "/admin-alice.key' - 2>&1; echo \"rc=$?\""));
  INFO(out);
  CHECK(out.find("rc=0") != std::string::npos);
  CHECK(out.find("\"strata.v1.ManagementPoint\"") != std::string::npos);
  CHECK(out.find("\"health\":\"SERVING\"") != std::string::npos);
}
