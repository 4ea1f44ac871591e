// The nudge server with real TLS over TCP (127.0.0.1, port 0) and the real
// client (common/nudge/client.h); the client directory is a fake here (the
// integration tests in tests/ use the real MP).

#include "mp/nudge_server.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/base/files.h"
#include "common/nudge/client.h"
#include "common/nudge/frame.h"
#include "common/nudge/tls_context.h"

namespace {

using strata::ChannelPem;
using strata::ReadFile;
namespace v1 = strata::v1;
namespace nudge = strata::nudge;

constexpr char kAgentA[] = "0b6f3d2e-1111-4a4a-8b8b-000000000001";
constexpr char kAgentB[] = "0b6f3d2e-2222-4a4a-8b8b-000000000002";
constexpr char kUnknown[] = "0b6f3d2e-3333-4a4a-8b8b-000000000003";

std::string MakePki(const std::string& name, const std::string& entities) {
  std::string d =
      std::filesystem::temp_directory_path() / absl::StrCat("strata-nudge-", name, "-", getpid());
  std::string cmd =
      absl::StrCat(STRATA_SOURCE_DIR, "/deploy/pki.sh ", d, " ", entities, " >/dev/null");
  REQUIRE(std::system(cmd.c_str()) == 0);
  return d;
}

const std::string& Pki() {
  static std::string d = MakePki("main", absl::StrCat("mp/P01.mp1 site/P01 agent/", kAgentA,
                                                      " agent/", kAgentB, " agent/", kUnknown));
  return d;
}

ChannelPem Pem(const std::string& dir, const std::string& entity) {
  ChannelPem pem;
  pem.ca = *ReadFile(Pki() + "/ca.pem");  // the server's CA: the hierarchy's
  if (!entity.empty()) {
    pem.cert_chain = *ReadFile(dir + "/" + entity + ".pem");
    pem.key = *ReadFile(dir + "/" + entity + ".key");
  }
  return pem;
}

// The fake client directory: allows a set of clients.
struct Directory {
  absl::Mutex mu;
  std::set<std::string> allowed{kAgentA, kAgentB};

  strata::mp::NudgeServer::Hooks Hooks() {
    strata::mp::NudgeServer::Hooks h;
    h.authorize = [this](const std::string& id, std::function<void(absl::Status)> then) {
      bool ok;
      {
        absl::MutexLock lock(&mu);
        ok = allowed.count(id) > 0;
      }
      then(ok ? absl::OkStatus()
              : absl::PermissionDeniedError("unknown, not approved or revoked client"));
    };
    h.policy = [](const std::string& id) {
      v1::PolicyResponse p;
      p.set_version("v7-" + id.substr(9, 4));
      p.mutable_settings()->set_policy_poll_seconds(600);
      return std::optional<v1::PolicyResponse>(p);
    };
    h.full_requested = [](const std::string&) { return false; };
    return h;
  }
};

std::unique_ptr<strata::mp::NudgeServer> StartServer(Directory& dir) {
  strata::mp::NudgeServer::Options o;
  o.listen_address = "127.0.0.1:0";
  o.tls.set_ca_file(Pki() + "/ca.pem");
  o.tls.set_cert_file(Pki() + "/mp-P01.mp1.pem");
  o.tls.set_key_file(Pki() + "/mp-P01.mp1.key");
  o.max_clients = 5000;
  o.keepalive_s = 60;
  o.hello_timeout = absl::Seconds(1);
  auto s = strata::mp::NudgeServer::Start(o, dir.Hooks());
  REQUIRE(s.ok());
  return std::move(*s);
}

// One client: its own loop, run by the test thread.
struct Client {
  explicit Client(const ChannelPem& pem) {
    auto c = nudge::MakeClientContext(pem);
    REQUIRE(c.ok());
    ctx = std::move(*c);
    base = event_base_new();
    nudge::Connection::Handlers h;
    h.welcome = [this](const v1::NudgeWelcome& w) {
      welcome = w.policy_version();
      welcome_policy = w.policy();
    };
    h.nudge = [this](const v1::Nudge& n) { nudges.push_back(n); };
    h.closed = [this](const absl::Status& s) {
      closed = true;
      ended = s;
    };
    conn = std::make_unique<nudge::Connection>(base, ctx.get(), h);
  }
  ~Client() {
    conn.reset();
    event_base_free(base);
  }
  void Start(const std::string& address, SSL_SESSION* resume = nullptr) {
    REQUIRE(conn->Start(address, v1::NudgeHello(), resume).ok());
  }
  // Runs the loop until `done` or 10 s.
  bool RunUntil(const std::function<bool()>& done, absl::Duration limit = absl::Seconds(10)) {
    const absl::Time end = absl::Now() + limit;
    while (!done()) {
      if (absl::Now() > end) return false;
      timeval t{0, 20000};
      event_base_loopexit(base, &t);
      event_base_dispatch(base);
    }
    return true;
  }
  bool Welcomed() {
    return RunUntil([this] { return !welcome.empty() || closed; }) && !welcome.empty();
  }

  nudge::SslCtx ctx;
  event_base* base;
  std::unique_ptr<nudge::Connection> conn;
  std::string welcome;
  v1::PolicyResponse welcome_policy;
  std::vector<v1::Nudge> nudges;
  bool closed = false;
  absl::Status ended;
};

// The client was closed by the server with `code` and a message naming `text`.
void CheckEnded(Client& c, absl::StatusCode code, const std::string& text) {
  REQUIRE(c.RunUntil([&] { return c.closed; }));
  CHECK(c.ended.code() == code);
  CHECK_THAT(std::string(c.ended.message()), Catch::Contains(text));
}

int Connect(const std::string& address) {
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
  timeval t{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof(t));
  return fd;
}

// Whether the server closes `fd` (read returns 0 or an error) within 5 s.
bool ClosedByServer(int fd) {
  char buf[256];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

// A blocking TLS connection with agent A's certificate, to send raw bytes.
struct RawTls {
  explicit RawTls(const std::string& address) {
    auto c = nudge::MakeClientContext(Pem(Pki(), absl::StrCat("agent-", kAgentA)));
    REQUIRE(c.ok());
    ctx = std::move(*c);
    fd = Connect(address);
    ssl = SSL_new(ctx.get());
    SSL_set_fd(ssl, fd);
    REQUIRE(SSL_connect(ssl) == 1);
  }
  ~RawTls() {
    SSL_free(ssl);
    close(fd);
  }
  bool ClosedByServer() {
    char buf[256];
    int n;
    while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
    }
    const int err = SSL_get_error(ssl, n);
    return err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL;
  }
  nudge::SslCtx ctx;
  int fd;
  SSL* ssl;
};

}  // namespace

TEST_CASE(
    "an agent holds the nudge channel: welcomed with its policy version, nudged, and told "
    "what it missed while away",
    "[nudge]") {
  Directory dir;
  auto server = StartServer(dir);
  const std::string address = server->bound_address();
  // B is asked to run now before it connects: it is told on welcome.
  server->Push({kAgentB}, v1::NOTIFICATION_KIND_RUN_NOW);

  Client a(Pem(Pki(), absl::StrCat("agent-", kAgentA)));
  a.Start(address);
  REQUIRE(a.Welcomed());
  CHECK(a.welcome == "v7-1111");
  // Its hello named no policy: the welcome carries the one it is served.
  CHECK(a.welcome_policy.version() == "v7-1111");
  CHECK(a.welcome_policy.settings().policy_poll_seconds() == 600);
  Client b(Pem(Pki(), absl::StrCat("agent-", kAgentB)));
  b.Start(address);
  REQUIRE(b.Welcomed());
  REQUIRE(b.RunUntil([&] { return !b.nudges.empty(); }));
  CHECK(b.nudges[0].kind() == v1::NOTIFICATION_KIND_RUN_NOW);
  CHECK(server->held() == 2);

  // A nudge for A reaches A only, with A's version and a spread.
  server->Push({kAgentA}, v1::NOTIFICATION_KIND_POLICY_CHANGED);
  REQUIRE(a.RunUntil([&] { return !a.nudges.empty(); }));
  CHECK(a.nudges[0].kind() == v1::NOTIFICATION_KIND_POLICY_CHANGED);
  CHECK(a.nudges[0].detail() == "v7-1111");
  CHECK(a.nudges[0].policy().settings().policy_poll_seconds() == 600);  // rides along
  b.RunUntil([] { return false; }, absl::Milliseconds(300));
  CHECK(b.nudges.size() == 1);

  // Reconnecting with the session of the first connection resumes it (no
  // full handshake for a fleet coming back), and still checks the client.
  SSL_SESSION* session = a.conn->Session();
  REQUIRE(session != nullptr);
  Client again(Pem(Pki(), absl::StrCat("agent-", kAgentA)));
  again.Start(address, session);
  REQUIRE(again.Welcomed());
  CHECK(again.conn->resumed());
  SSL_SESSION_free(session);
  // The older connection of the same client is told it was replaced.
  CheckEnded(a, absl::StatusCode::kPermissionDenied, "replaced by a newer connection");
  CHECK(server->held() == 2);
}

TEST_CASE(
    "the nudge channel refuses a client without a certificate, with another CA's, a site's "
    "certificate and an unknown client; a revoked one is cut off",
    "[nudge]") {
  Directory dir;
  auto server = StartServer(dir);
  const std::string address = server->bound_address();

  Client none(Pem(Pki(), ""));
  none.Start(address);
  CHECK_FALSE(none.Welcomed());
  CHECK(none.closed);

  const std::string other = MakePki("other", absl::StrCat("agent/", kAgentA));
  Client foreign(Pem(other, absl::StrCat("agent-", kAgentA)));
  foreign.Start(address);
  CHECK_FALSE(foreign.Welcomed());
  CHECK(foreign.closed);

  Client site(Pem(Pki(), "site-P01"));
  site.Start(address);
  CHECK_FALSE(site.Welcomed());
  CheckEnded(site, absl::StatusCode::kPermissionDenied, "only registered agents");

  Client unknown(Pem(Pki(), absl::StrCat("agent-", kUnknown)));
  unknown.Start(address);
  CHECK_FALSE(unknown.Welcomed());
  CheckEnded(unknown, absl::StatusCode::kPermissionDenied, "not approved or revoked");
  CHECK(server->counts().refused >= 4);

  Client a(Pem(Pki(), absl::StrCat("agent-", kAgentA)));
  a.Start(address);
  REQUIRE(a.Welcomed());
  server->Close(kAgentA, "this client's registration was revoked");
  CheckEnded(a, absl::StatusCode::kPermissionDenied, "revoked");
  CHECK(server->held() == 0);
}

TEST_CASE(
    "malformed and oversized frames, a slow-loris and 1,000 connections dropped in a loop "
    "leave the nudge server up and other clients on their channel",
    "[nudge]") {
  Directory dir;
  auto server = StartServer(dir);
  const std::string address = server->bound_address();
  Client b(Pem(Pki(), absl::StrCat("agent-", kAgentB)));
  b.Start(address);
  REQUIRE(b.Welcomed());

  {  // Not a NudgeFrame.
    RawTls raw(address);
    const unsigned char garbage[] = {0, 4, 0xff, 0xff, 0xff, 0xff};
    SSL_write(raw.ssl, garbage, sizeof(garbage));
    CHECK(raw.ClosedByServer());
  }
  {  // A length beyond the 4 KiB bound.
    RawTls raw(address);
    const unsigned char huge[] = {0xff, 0xff, 1, 2, 3};
    SSL_write(raw.ssl, huge, sizeof(huge));
    CHECK(raw.ClosedByServer());
  }
  {  // Something other than a hello first.
    RawTls raw(address);
    std::string ping;
    v1::NudgeFrame f;
    f.mutable_ping();
    REQUIRE(strata::nudge::EncodeFrame(f, &ping).ok());
    SSL_write(raw.ssl, ping.data(), static_cast<int>(ping.size()));
    CHECK(raw.ClosedByServer());
  }
  {  // Slow-loris: connects, never finishes the handshake (hello_timeout 1 s).
    const int fd = Connect(address);
    const absl::Time t0 = absl::Now();
    CHECK(ClosedByServer(fd));
    CHECK(absl::Now() - t0 < absl::Seconds(4));
    close(fd);
  }
  {  // Slow-loris trickling a byte every 200 ms (each would reset an idle
     // timeout): closed at the deadline all the same.
    const int fd = Connect(address);
    timeval t{0, 200 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof(t));
    const absl::Time t0 = absl::Now();
    bool closed = false;
    while (!closed && absl::Now() - t0 < absl::Seconds(8)) {
      const char byte = 0x16;  // the start of a TLS record, never finished
      if (send(fd, &byte, 1, MSG_NOSIGNAL) != 1) {
        closed = true;
        break;
      }
      char buf[64];
      const ssize_t n = read(fd, buf, sizeof(buf));
      closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    CHECK(closed);
    CHECK(absl::Now() - t0 < absl::Seconds(4));
    close(fd);
  }
  {  // TLS done, no hello: dropped too.
    RawTls raw(address);
    CHECK(raw.ClosedByServer());
  }
  for (int i = 0; i < 1000; ++i) close(Connect(address));
  for (int i = 0; i < 50; ++i) RawTls raw(address);  // handshake, then gone

  // B kept its channel and is still told things; nothing is left connecting.
  server->Push({kAgentB}, v1::NOTIFICATION_KIND_FULL_INVENTORY);
  REQUIRE(b.RunUntil([&] { return !b.nudges.empty(); }));
  CHECK_FALSE(b.closed);
  CHECK(server->held() == 1);
  auto settled = [&] { return server->counts().connecting == 0; };
  for (int i = 0; i < 100 && !settled(); ++i) absl::SleepFor(absl::Milliseconds(50));
  CHECK(server->counts().connecting == 0);
}
