// Live queries asked at the CAS, end to end: real site servers, MPs and
// agents of this machine (over mutual TLS); answers computed from the
// machine's live state and compared with what ss and /proc show.

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "strata/v1/admin/live_queries.pb.h"
#include "tests/fixture/client_fixture.h"
#include "tests/fixture/content_fixture.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

// The output of a shell command.
std::string Shell(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// TCP ports in LISTEN, as ss shows them.
std::set<std::string> SsPorts() {
  std::set<std::string> ports;
  for (absl::string_view line : absl::StrSplit(Shell("ss -Hltn"), '\n', absl::SkipEmpty())) {
    std::vector<std::string> c = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (c.size() < 4) continue;
    ports.insert(c[3].substr(c[3].rfind(':') + 1));
  }
  return ports;
}

// Pids of processes named `name`, from /proc.
std::set<std::string> ProcPids(const std::string& name) {
  std::set<std::string> pids;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = e.path().filename().string();
    if (pid.empty() || !absl::ascii_isdigit(pid[0])) continue;
    std::ifstream in(e.path() / "comm");
    std::string comm;
    std::getline(in, comm);
    if (comm == name) pids.insert(pid);
  }
  return pids;
}

v1::LiveQueryResults Results(ContentHierarchy& h, const std::string& id) {
  CtlRun r = h.Ctl({"get", "live-query", id, "-o", "json"});
  v1::LiveQueryResults s;
  if (r.exit_code == 0) (void)google::protobuf::util::JsonStringToMessage(r.out, &s);
  return s;
}

// The query's id from the command's stderr ("live query <id> on N devices").
std::string QueryId(const CtlRun& r) {
  const size_t at = r.err.find("live query ");
  return at == std::string::npos ? "" : r.err.substr(at + 11, 36);
}

// Column `col` of every row of the JSON answer.
std::multiset<std::string> Column(const v1::LiveQueryResults& s, int col) {
  std::multiset<std::string> out;
  for (const auto& r : s.rows())
    if (col < r.values_size()) out.insert(r.values(col));
  return out;
}

}  // namespace

TEST_CASE(
    "a live query at the CAS is answered by every online agent from its live state, rows "
    "streaming back, offline devices counted and merging in when they return",
    "[live]") {
  ContentHierarchy h;
  std::map<std::string, std::unique_ptr<MpProcess>> mps = StartMps(h);
  const std::vector<std::pair<std::string, std::string>> agents = {
      {"live-p01", "P01"}, {"live-p02", "P02"}, {"live-s01", "S01"}, {"live-off", "P01"}};
  std::map<std::string, std::unique_ptr<AgentDaemon>> daemons;
  auto start = [&](const std::string& name, const std::string& site) {
    daemons[name] = std::make_unique<AgentDaemon>(
        h.dir, name, mps[site]->address(),
        std::vector<std::string>{"--token=" + std::string(kToken), "--hardware_id=hw-" + name});
  };
  for (const auto& [name, site] : agents) start(name, site);
  for (const auto& [name, site] : agents)
    REQUIRE(daemons[name]->WaitForLog("agent.nudge_connected") != std::string::npos);
  REQUIRE(
      h.Ctl({"create", "collection", "Live", "--query", "device.name like \"live-%\""}).exit_code ==
      0);
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM collection_members WHERE collection = 'Live'", "4",
                     seconds(60)));
  REQUIRE(daemons["live-off"]->Stop() == 0);
  // The MPs tell their sites who holds a channel; the CAS sees live-off gone.
  REQUIRE(Eventually(h.cas->db(),
                     "SELECT count(*) FROM client_presence p JOIN devices d ON d.id = p.device_id "
                     "WHERE d.name LIKE 'live-%' AND p.online",
                     "3", seconds(30)));

  {  // bad questions are refused at the provider, with the reason, and audited
    CtlRun r =
        h.Ctl({"query", "process.nmae = \"x\"", "--select", "process.pid", "--collection", "Live"});
    CHECK(r.exit_code != 0);
    CHECK(absl::StrContains(r.err, "unknown field process.nmae"));
    r = h.Ctl({"query", "os.id = \"debian\"", "--select", "software.name,process.name",
               "--collection", "Live"});
    CHECK(absl::StrContains(r.err, "fields of software and of process"));
    r = h.Ctl({"query", std::string(5000, ' ') + "os.id = \"x\"", "--select", "os.id",
               "--collection", "Live"});
    CHECK(absl::StrContains(r.err, "longer than 4096 bytes"));
    r = h.Ctl({"create", "collection", "Listening", "--query", "socket.port = 22"});
    CHECK(absl::StrContains(r.err, "read live on clients"));
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND "
                                "action = 'RunLiveQuery' AND object_type = 'live query'") == 3);
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM live_queries") == 0);
  }

  {  // listening sockets: the agents' answer is what ss shows; rows stream to the command
    const std::set<std::string> before = SsPorts();
    CtlRun r = h.Ctl({"query", "socket.protocol like \"tcp%\"", "--select",
                      "device.name,socket.port,socket.process", "--collection", "Live", "-o", "csv",
                      "--wait", "60"});
    const std::set<std::string> after = SsPorts();
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(absl::StrContains(r.out, "DEVICE,SITE,DEVICE.NAME,SOCKET.PORT,SOCKET.PROCESS"));
    CHECK(absl::StrContains(r.err, "3/4 answered, 0 pending, 1 offline, 0 failed"));
    const std::string id = QueryId(r);
    v1::LiveQueryResults s = Results(h, id);
    for (const char* agent : {"live-p01", "live-p02", "live-s01"}) {
      INFO(agent);
      std::set<std::string> ports;
      for (const auto& row : s.rows())
        if (row.device_name() == agent) ports.insert(row.values(1));
      // A port open in both looks is in the answer; every port answered
      // was open in one of them (servers of the test come and go).
      for (const auto& p : before)
        if (after.count(p)) CHECK(ports.count(p) == 1);
      for (const auto& p : ports) CHECK((before.count(p) + after.count(p)) > 0);
      CHECK(absl::StrContains(r.out, absl::StrCat(agent, ",")));
    }
    CHECK(s.counts().offline() == 1);

    // live-off comes back before the query expires: its answer merges in.
    start("live-off", "P01");
    WaitFor([&] { return Results(h, id).counts().answered() == 4; }, seconds(60));
    CHECK(Results(h, id).counts().answered() == 4);
  }

  {  // processes: what /proc shows, with their users
    const std::set<std::string> before = ProcPids("strata-agent");
    CtlRun r = h.Ctl({"query", "process.name = \"strata-agent\"", "--select",
                      "process.pid,process.user,process.cmdline", "--device", "live-p02"});
    const std::set<std::string> after = ProcPids("strata-agent");
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    v1::LiveQueryResults s = Results(h, QueryId(r));
    std::set<std::string> pids;
    for (const auto& pid : Column(s, 0)) pids.insert(pid);
    for (const auto& p : before)
      if (after.count(p)) CHECK(pids.count(p) == 1);
    CHECK(pids.size() >= 4);
    CHECK(Column(s, 1).count("root") == pids.size());
    for (const auto& cmd : Column(s, 2)) CHECK(absl::StrContains(cmd, "strata-agent"));
    CHECK(s.counts().targeted() == 1);
  }

  {  // files, and the inventory read now; a device that does not match gives no row
    const std::string path = h.dir.path() + "/marker";
    WriteFile(path, "hello\n");
    CtlRun r =
        h.Ctl({"query", absl::StrCat("file.path = \"", path, "\" and os.id != \"\""), "--select",
               "file.exists,file.size,file.sha256,os.id", "--device", "live-s01"});
    REQUIRE(r.exit_code == 0);
    v1::LiveQueryResults s = Results(h, QueryId(r));
    REQUIRE(s.rows_size() == 1);
    CHECK(s.rows(0).values(0) == "true");
    CHECK(s.rows(0).values(1) == "6");
    CHECK(s.rows(0).values(2) ==
          "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
    CHECK_FALSE(s.rows(0).values(3).empty());
    r = h.Ctl(
        {"query", "os.id = \"no-such-os\"", "--select", "device.name", "--collection", "Live"});
    CHECK(absl::StrContains(r.err, "4/4 answered"));
    CHECK(Results(h, QueryId(r)).rows_size() == 0);
  }

  {  // too costly on the client: stopped at its time limit and reported, not hung
    CtlRun r = h.Ctl({"query", "os_update.pending >= 0", "--select", "os_update.pending",
                      "--device", "live-p01", "--time-limit", "100ms"});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(absl::StrContains(r.err, "too_costly"));
    v1::LiveQueryResults s = Results(h, QueryId(r));
    REQUIRE(s.devices_size() == 1);
    CHECK(s.devices(0).state() == "too_costly");
    CHECK(absl::StrContains(s.devices(0).detail(), "stopped"));
    CHECK(s.counts().failed() == 1);
  }

  {  // a query a day past its expiry goes, with its answers, at every site
    const std::string id =
        h.cas->db().Scalar("SELECT id::text FROM live_queries WHERE query LIKE 'socket.protocol%'");
    REQUIRE(h.p01->db().ScalarInt(absl::StrCat(
                "SELECT count(*) FROM live_query_results WHERE query = '", id, "'")) > 0);
    h.cas->db().Exec(absl::StrCat(
        "UPDATE live_queries SET expires_at = now() - interval '2 days' WHERE id = '", id, "'"));
    for (SiteProcess* site : {h.cas.get(), h.p01.get(), h.p02.get()})
      CHECK(Eventually(
          site->db(),
          absl::StrCat("SELECT count(*) FROM live_query_results WHERE query = '", id, "'"), "0",
          seconds(150)));
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM live_queries") == 4);
  }

  {  // audited: each query with its text and target
    CHECK(h.cas->db().ScalarInt(
              "SELECT count(*) FROM audit_log WHERE outcome = 'ok' AND action = 'run' AND "
              "object_type = 'live query' AND strpos(summary, 'socket.protocol like') > 0 AND "
              "strpos(summary, 'collection \"Live\"') > 0") == 1);
  }
}
