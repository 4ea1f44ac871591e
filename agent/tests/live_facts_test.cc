// What a live query reads on this machine (live_facts.h) and the engine's
// answers: the test's own process and a socket it listens on, a file it
// wrote, the bounds that stop a costly query.

#include "agent/live_facts.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/live_query_engine.h"

using namespace strata;
using namespace strata::agent;

namespace {

collections::LiveQuerySpec Spec(const std::string& q, const std::vector<std::string>& select) {
  auto spec = collections::CheckLiveQuery(q, select);
  REQUIRE(spec.ok());
  return *spec;
}

// A TCP socket listening on 127.0.0.1, its port.
struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(listen(fd, 1) == 0);
    socklen_t n = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
    port = ntohs(a.sin_port);
  }
  ~Listener() { close(fd); }
};

}  // namespace

TEST_CASE("live facts: this process, the socket it listens on and its owner, a file", "[live]") {
  Listener l;
  char dir_template[] = "/tmp/st-live-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  std::ofstream(dir + "/f") << "hello\n";
  LiveContext ctx;
  ctx.work_dir = dir + "/work";
  auto facts = LiveFacts(Spec(absl::StrCat("socket.port = ", l.port,
                                           " and process.pid > 0 and "
                                           "file.path = \"",
                                           dir, "/f\""),
                              {"socket.pid"}),
                         ctx);
  REQUIRE(facts.ok());
  bool found_socket = false;
  for (const auto& s : (*facts)["socket"]) {
    if (s.at("port") != std::to_string(l.port)) continue;
    found_socket = true;
    CHECK(s.at("protocol") == "tcp");
    CHECK(s.at("address") == "127.0.0.1");
    CHECK(s.at("pid") == std::to_string(getpid()));
    CHECK(s.at("process") == "agent_test");
  }
  CHECK(found_socket);
  bool found_self = false;
  for (const auto& p : (*facts)["process"])
    if (p.at("pid") == std::to_string(getpid())) {
      found_self = true;
      CHECK(p.at("name") == "agent_test");
      CHECK(p.at("ppid") == std::to_string(getppid()));
      CHECK(absl::StrContains(p.at("cmdline"), "agent_test"));
    }
  CHECK(found_self);
  REQUIRE((*facts)["file"].size() == 1);
  CHECK((*facts)["file"][0].at("exists") == "true");
  CHECK((*facts)["file"][0].at("size") == "6");
  CHECK((*facts)["file"][0].at("sha256") ==
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
  CHECK((*facts)["device"][0].at("name").size() > 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("live facts: a class over its row bound, or a deadline passed, stops the query",
          "[live]") {
  LiveContext ctx;
  ctx.work_dir = "/tmp";
  ctx.max_rows_per_class = 1;
  auto many = LiveFacts(Spec("process.pid > 0", {"process.pid"}), ctx);
  REQUIRE_FALSE(many.ok());
  CHECK(absl::IsResourceExhausted(many.status()));
  ctx.max_rows_per_class = 20000;
  ctx.deadline = absl::Now() - absl::Seconds(1);
  auto late = LiveFacts(Spec("process.pid > 0", {"process.pid"}), ctx);
  REQUIRE_FALSE(late.ok());
  CHECK(absl::IsDeadlineExceeded(late.status()));
}

TEST_CASE("the live query engine answers with the rows its select picks, bounded", "[live]") {
  Listener l;
  char dir_template[] = "/tmp/st-live-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  LiveQueryEngine engine({dir, {}, [] { return "P01"; }, nullptr});
  v1::LiveQueryPolicy q;
  q.set_name("11111111-1111-1111-1111-111111111111");
  q.set_query(absl::StrCat("socket.port = ", l.port));
  q.add_select("device.site");
  q.add_select("socket.port");
  q.add_select("socket.process");
  q.set_max_rows(10);
  q.set_time_limit_ms(10000);
  v1::LiveQueryAnswer a = engine.Answer(q);
  CHECK(a.state() == v1::LIVE_QUERY_STATE_ANSWERED);
  REQUIRE(a.rows_size() == 1);
  CHECK(a.rows(0).values(0) == "P01");
  CHECK(a.rows(0).values(1) == std::to_string(l.port));
  CHECK(a.rows(0).values(2) == "agent_test");
  // Every process, at most two rows: cut, and said so.
  q.set_query("process.pid > 0");
  q.clear_select();
  q.add_select("process.name");
  q.set_max_rows(2);
  a = engine.Answer(q);
  CHECK(a.state() == v1::LIVE_QUERY_STATE_ANSWERED);
  CHECK(a.rows_size() == 2);
  CHECK(a.truncated());
  // A bad query is a failed answer naming why.
  q.set_query("process.nmae = \"x\"");
  a = engine.Answer(q);
  CHECK(a.state() == v1::LIVE_QUERY_STATE_FAILED);
  CHECK(absl::StrContains(a.detail(), "unknown field"));
  std::filesystem::remove_all(dir);
}
