// A real gRPC server over mutual TLS on loopback TCP, with certificates from
// strata-pki's authority: it refuses a revoked client in the handshake,
// follows a new CRL without a restart, and serves a renewed certificate to
// new connections without a restart.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "common/base/files.h"
#include "common/net/tls.h"
#include "grpcpp/health_check_service_interface.h"
#include "pki/authority.h"
#include "strata/v1/site_link.grpc.pb.h"

namespace {

using strata::CertificateSpec;
using strata::pki::Authority;

struct Pki {
  std::string dir;
  std::unique_ptr<Authority> root;
  Pki() {
    dir =
        std::filesystem::temp_directory_path() / ("strata-revocation-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir);
    auto made = Authority::Create(dir, "Test Root", 3650, "a long enough passphrase");
    REQUIRE(made.ok());
    root = std::move(*made);
  }
  ~Pki() { std::filesystem::remove_all(dir); }

  // Issues ROLE/NAME (a server certificate for 127.0.0.1) into DIR/NAME.pem/.key.
  std::string Issue(const std::string& role, const std::string& name) {
    CertificateSpec spec;
    spec.role = role;
    spec.name = name;
    spec.server = role != "admin";
    if (spec.server) spec.ip_addresses = {"127.0.0.1"};
    auto issued = root->Issue(spec);
    REQUIRE(issued.ok());
    REQUIRE(strata::WriteFileDurably(dir + "/" + name + ".pem", issued->cert_pem, 0644).ok());
    REQUIRE(strata::WriteFileDurably(dir + "/" + name + ".key", issued->key_pem, 0600).ok());
    return issued->serial_hex;
  }
  strata::v1::TlsConfig Tls(const std::string& name) const {
    strata::v1::TlsConfig tls;
    tls.set_ca_file(dir + "/root.pem");
    tls.set_cert_file(dir + "/" + name + ".pem");
    tls.set_key_file(dir + "/" + name + ".key");
    tls.set_crl_file(dir + "/crl.pem");
    tls.set_refresh_seconds(1);
    return tls;
  }
};

// gRPC health of the server at `address`, on a new connection presenting
// `tls`'s certificate.
absl::Status Health(const std::string& address, const strata::v1::TlsConfig& tls) {
  strata::ChannelOptions options;
  options.own_connection = true;
  auto channel = strata::MakeChannel(address, tls, options);
  if (!channel.ok()) return channel.status();
  return strata::CheckServing(*channel, 5000);
}

// The serial of the certificate the server presents to a new connection,
// as OpenSSL's own client reads it.
std::string ServedSerial(const std::string& address, const strata::v1::TlsConfig& client) {
  const std::string cmd = "openssl s_client -connect " + address + " -cert " + client.cert_file() +
                          " -key " + client.key_file() + " -CAfile " + client.ca_file() +
                          " </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[256] = {0};
  std::string out;
  while (fgets(buf, sizeof buf, pipe) != nullptr) out += buf;
  pclose(pipe);
  // "serial=ABC...\n"
  const size_t eq = out.find('=');
  return eq == std::string::npos ? "" : out.substr(eq + 1, out.find_last_not_of('\n') - eq);
}

// A gRPC server on 127.0.0.1 (any port) with NAME's certificate, serving
// health and a service whose every call answers UNIMPLEMENTED.
struct TestServer {
  strata::v1::SiteLink::Service service;
  std::unique_ptr<grpc::Server> server;
  std::string address;  // 127.0.0.1:PORT
  TestServer(const Pki& pki, const std::string& name) {
    grpc::EnableDefaultHealthCheckService(true);
    auto started = strata::StartServer("127.0.0.1:0", pki.Tls(name), {&service}, {}, &address);
    REQUIRE(started.ok());
    server = std::move(*started);
  }
  ~TestServer() { server->Shutdown(); }
};

template <typename F>
bool Eventually(F f, int seconds = 15) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return f();
}

}  // namespace

TEST_CASE("a server refuses a revoked peer in the handshake and follows a new CRL live") {
  Pki pki;
  pki.Issue("site", "CAS");
  const std::string p01_serial = pki.Issue("site", "P01");
  pki.Issue("admin", "alice");
  TestServer cas(pki, "CAS");
  const std::string& address = cas.address;

  REQUIRE(Health(address, pki.Tls("P01")).ok());
  REQUIRE(Health(address, pki.Tls("alice")).ok());

  // Revoked at the root, the new CRL copied over the server's: no restart.
  REQUIRE(pki.root->Revoke(p01_serial, "keyCompromise").ok());
  CHECK(Eventually([&] { return !Health(address, pki.Tls("P01")).ok(); }));
  CHECK(Health(address, pki.Tls("P01")).code() == absl::StatusCode::kUnavailable);
  CHECK(Health(address, pki.Tls("alice")).ok());
}

TEST_CASE("a renewed server certificate is served to new connections without a restart") {
  Pki pki;
  const std::string first = pki.Issue("site", "CAS");
  pki.Issue("site", "P01");
  TestServer cas(pki, "CAS");
  const std::string& address = cas.address;
  REQUIRE(strata::pki::NormalizeSerial(ServedSerial(address, pki.Tls("P01"))) ==
          strata::pki::NormalizeSerial(first));

  // strata-pki renew: the same key, so only the certificate file changes.
  auto renewed = pki.root->Renew(*strata::ReadFile(pki.dir + "/CAS.pem"), 30);
  REQUIRE(renewed.ok());
  REQUIRE(strata::WriteFileDurably(pki.dir + "/CAS.pem", renewed->cert_pem, 0644).ok());
  CHECK(Eventually([&] {
    return strata::pki::NormalizeSerial(ServedSerial(address, pki.Tls("P01"))) ==
           strata::pki::NormalizeSerial(renewed->serial_hex);
  }));
  // The old one may now be revoked: nothing still needs it.
  REQUIRE(pki.root->Revoke(first, "superseded", /*force=*/true).ok());
  CHECK(Health(address, pki.Tls("P01")).ok());
}

TEST_CASE("an agent is refused in the handshake once its site's issuing CA is revoked") {
  Pki pki;
  pki.Issue("mp", "mp1");
  CertificateSpec spec;
  spec.role = "issuing";
  spec.name = "P01";
  spec.ca = true;
  auto issuing = pki.root->Issue(spec);
  REQUIRE(issuing.ok());
  REQUIRE(strata::WriteFileDurably(pki.dir + "/issuing.pem", issuing->cert_pem, 0644).ok());
  REQUIRE(strata::WriteFileDurably(pki.dir + "/issuing.key", issuing->key_pem, 0600).ok());
  auto ca = strata::IssuingCa::Load(pki.dir + "/issuing.pem", pki.dir + "/issuing.key");
  REQUIRE(ca.ok());
  auto request = strata::MakeKeyAndCsr("agent");
  auto agent = (*ca)->Sign(request->csr_pem, "agent", "00000000-0000-0000-0000-00000000000b", 30);
  REQUIRE(agent.ok());

  TestServer mp(pki, "mp1");
  const std::string& address = mp.address;
  auto agent_health = [&] {
    strata::ChannelOptions options;
    options.own_connection = true;
    strata::ChannelPem pem{*strata::ReadFile(pki.dir + "/root.pem"), agent->chain_pem,
                           request->key_pem};
    return strata::CheckServing(strata::MakeChannel(address, pem, options), 5000);
  };
  REQUIRE(agent_health().ok());
  REQUIRE(pki.root->Revoke(issuing->serial_hex, "cACompromise").ok());
  CHECK(Eventually([&] { return agent_health().code() == absl::StatusCode::kUnavailable; }));
}

TEST_CASE("a client refuses a server whose certificate does not name the address dialled") {
  Pki pki;
  pki.Issue("site", "CAS");  // names 127.0.0.1 only
  pki.Issue("site", "P01");
  TestServer cas(pki, "CAS");
  const std::string port = cas.address.substr(cas.address.rfind(':') + 1);
  CHECK(Health("127.0.0.1:" + port, pki.Tls("P01")).ok());
  CHECK(Health("localhost:" + port, pki.Tls("P01")).code() == absl::StatusCode::kUnavailable);
}
