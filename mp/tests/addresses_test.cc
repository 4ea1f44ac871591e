// Where an MP's nudge channel listens and what agents are told, and how many
// channels it admits under its open-file limit.

#include <catch2/catch.hpp>

#include "mp/mp_server.h"
#include "mp/nudge_server.h"
#include "mp/open_files.h"

using namespace strata;

TEST_CASE("the nudge channel listens beside the gRPC listener unless configured") {
  CHECK(mp::DefaultNudgeAddress("unix:/run/strata/mp.sock") == "unix:/run/strata/mp.sock.nudge");
  CHECK(mp::DefaultNudgeAddress("127.0.0.1:0") == "127.0.0.1:0");
  CHECK(mp::DefaultNudgeAddress("0.0.0.0:7260") == "0.0.0.0:10123");
  CHECK(mp::DefaultNudgeAddress("[::]:7260") == "[::]:10123");
}

TEST_CASE("agents are told the nudge channel on the host they reach the MP by") {
  v1::MpConfig c;
  // Listening on all interfaces binds "localhost:10123"; remote agents are
  // told the public host instead.
  c.set_public_address("mp1.p01.example.net:7260");
  CHECK(mp::NudgePublicAddress(c, "localhost:10123") == "mp1.p01.example.net:10123");
  c.set_nudge_public_address("nudge.p01.example.net:443");
  CHECK(mp::NudgePublicAddress(c, "localhost:10123") == "nudge.p01.example.net:443");
  v1::MpConfig local;  // tests, quickstart: unix sockets
  CHECK(mp::NudgePublicAddress(local, "unix:/tmp/mp.sock.nudge") == "unix:/tmp/mp.sock.nudge");
}

TEST_CASE("nudge channels leave a reserve of open files for agents' gRPC calls") {
  CHECK(mp::MaxNudgeClients(20000) == 17500);  // an eighth
  CHECK(mp::MaxNudgeClients(65536) == 57344);
  CHECK(mp::MaxNudgeClients(2048) == 1536);  // at least 512
  CHECK(mp::MaxNudgeClients(64) == 48);      // at most a quarter
}
