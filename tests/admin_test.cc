// The provider and stratactl, each case against a hierarchy of its own
// (tests/fixture/admin_hierarchy.h): collections evaluated at the primaries,
// RBAC and audit, reports, links and boundaries, client settings reaching
// agents; and an independent grpc-js client. Enrollment tokens, approval and
// site systems are in client_access_test.cc; handshakes and health in
// server_security_test.cc (all one binary).
#include <catch2/catch.hpp>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/fixture/admin_hierarchy.h"

using namespace strata;
using namespace strata::testing;
using std::chrono::seconds;

namespace {

// Members of `collection` at `db`, by device name, sorted.
std::string Members(const TestDatabase& db, const std::string& collection) {
  return db.Scalar(
      "SELECT coalesce(string_agg(d.name, ',' ORDER BY d.name), '') FROM collection_members m "
      "JOIN devices d ON d.id = m.device_id WHERE m.collection = $1",
      {collection});
}

bool MembersBecome(const TestDatabase& db, const std::string& collection,
                   const std::string& expected) {
  std::string last;
  bool ok = WaitFor([&] { return (last = Members(db, collection)) == expected; }, seconds(60));
  UNSCOPED_INFO("members of " << collection << ": " << last << ", expected " << expected);
  return ok;
}

// The first column of CSV output, header dropped.
std::vector<std::string> FirstColumn(const std::string& csv) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(csv, '\n', absl::SkipEmpty())) {
    out.push_back(std::string(line.substr(0, line.find(','))));
  }
  if (!out.empty()) out.erase(out.begin());
  return out;
}

}  // namespace

TEST_CASE(
    "a collection created at the CAS is evaluated at each primary and its membership "
    "reaches the CAS; rule and inventory changes move devices",
    "[admin]") {
  AdminHierarchy h;
  const std::string old_openssl_big =
      R"(memory.total_mb >= 8192 and software.name = "openssl" and software.version < "3.0.11")"
      R"( and device.name like "t-%")";
  CtlRun c = h.Ctl("alice", {"create", "collection", "Old OpenSSL", "--query", old_openssl_big});
  INFO(c.err);
  REQUIRE(c.exit_code == 0);
  // Each primary evaluates its own clients (S01's belong to P01); the CAS sees all.
  CHECK(MembersBecome(h.p01->db(), "Old OpenSSL", "t-a1,t-a4,t-s1"));
  CHECK(MembersBecome(h.p02->db(), "Old OpenSSL", "t-b1,t-b3"));
  CHECK(MembersBecome(h.cas->db(), "Old OpenSSL", "t-a1,t-a4,t-b1,t-b3,t-s1"));
  CtlRun members = h.Ctl("alice", {"get", "members", "Old OpenSSL", "-o", "csv"});
  REQUIRE(members.exit_code == 0);
  CHECK(absl::StrJoin(FirstColumn(members.out), ",") == "t-a1,t-a4,t-b1,t-b3,t-s1");

  // A rule change re-evaluates, at both primaries.
  c = h.Ctl("alice", {"update", "collection", "Old OpenSSL", "--remove-rule", "query-1",
                      "--add-query", R"(memory.total_mb >= 16384 and device.name like "t-%")"});
  INFO(c.err);
  REQUIRE(c.exit_code == 0);
  CHECK(MembersBecome(h.cas->db(), "Old OpenSSL", "t-a1,t-a3,t-a4,t-b1,t-b2,t-s1"));

  // An inventory change moves a device in or out, incrementally.
  c = h.Ctl("alice",
            {"create", "collection", "Has telnet", "--query", R"(software.name = "telnet")"});
  REQUIRE(c.exit_code == 0);
  REQUIRE(WaitFor(
      [&] {
        return h.p01->db().Scalar(
                   "SELECT count(*) FROM collection_eval WHERE collection = 'Has "
                   "telnet'") == "1";
      },
      seconds(30)));
  const std::string full_evals = h.p01->db().Scalar(
      "SELECT evaluated_at FROM collection_eval "
      "WHERE collection = 'Has telnet'");
  h.Delta("t-a2", "telnet", true);
  h.Delta("t-b2", "telnet", true);
  h.Delta("t-s2", "telnet", true);  // through the secondary
  CHECK(MembersBecome(h.cas->db(), "Has telnet", "t-a2,t-b2,t-s2"));
  h.Delta("t-a2", "telnet", false);
  CHECK(MembersBecome(h.cas->db(), "Has telnet", "t-b2,t-s2"));
  // Incremental: the collection was not evaluated in full again meanwhile.
  CHECK(h.p01->db().Scalar("SELECT evaluated_at FROM collection_eval WHERE collection = 'Has "
                           "telnet'") == full_evals);

  // The real agent of this machine is a device like any other.
  CtlRun dev = h.Ctl("alice", {"describe", "device", h.agent_id, "-o", "json"});
  INFO(dev.err);
  REQUIRE(dev.exit_code == 0);
  CHECK(dev.out.find("\"All Systems\"") != std::string::npos);
  CHECK(dev.out.find("\"kernel\"") != std::string::npos);

  {  // Global data authored at a primary reaches the CAS and the other primary,
     // which evaluates it for its own clients.
    CtlRun made = h.Ctl("alice",
                        {"create", "collection", "Made at P01", "--query",
                         R"(memory.total_mb >= 32768 and device.name like "t-%")"},
                        h.pv_p01.get());
    INFO(made.err);
    REQUIRE(made.exit_code == 0);
    CHECK(MembersBecome(h.p02->db(), "Made at P01", "t-b2"));
    CHECK(MembersBecome(h.cas->db(), "Made at P01", "t-a4,t-b2"));
    CHECK(h.cas->db().Scalar("SELECT site_code FROM audit_log WHERE object_name = 'Made at P01'") ==
          "P01");
  }

  {  // Built-in reports, as table rows the tool prints as CSV.
    CtlRun list = h.Ctl("alice", {"report", "list", "-o", "csv"});
    REQUIRE(list.exit_code == 0);
    for (const char* r : {"hardware-summary", "software-by-title", "devices-by-os",
                          "inactive-devices", "collection-membership", "replication-health"}) {
      CHECK(list.out.find(r) != std::string::npos);
    }
    CtlRun sw = h.Ctl(
        "alice", {"report", "run", "software-by-title", "--param", "name=openssl", "-o", "csv"});
    INFO(sw.err);
    REQUIRE(sw.exit_code == 0);
    CHECK(sw.out.rfind("name,version,devices\n", 0) == 0);
    CHECK(sw.out.find("openssl,1.1.1f-1,2\n") != std::string::npos);  // t-a1, t-a2
    CHECK(sw.out.find("openssl,1.1.1w-0,2\n") != std::string::npos);  // t-s1, t-s2 via S01
    CHECK(sw.out.find("openssl,3.0.9-1,1\n") != std::string::npos);   // t-b3 at P02
    CtlRun os = h.Ctl("alice", {"report", "run", "devices-by-os", "-o", "json"});
    REQUIRE(os.exit_code == 0);
    CHECK(os.out.find("\"columns\"") != std::string::npos);
    h.p01->db().Exec("UPDATE devices SET active = false WHERE name = 't-a3'");
    REQUIRE(Eventually(h.cas->db(), "SELECT active FROM devices WHERE name = 't-a3'", "f"));
    CtlRun inactive = h.Ctl("alice", {"report", "run", "inactive-devices", "-o", "csv"});
    REQUIRE(inactive.exit_code == 0);
    CHECK(FirstColumn(inactive.out) == std::vector<std::string>{"t-a3"});
    CtlRun members = h.Ctl("alice", {"report", "run", "collection-membership", "--param",
                                     "collection=Old OpenSSL", "-o", "csv"});
    REQUIRE(members.exit_code == 0);
    CHECK(absl::StrJoin(FirstColumn(members.out), ",") == "t-a1,t-a3,t-a4,t-b1,t-b2,t-s1");
    CtlRun links = h.Ctl("alice", {"report", "run", "replication-health", "-o", "csv"});
    REQUIRE(links.exit_code == 0);
    CHECK(FirstColumn(links.out) == std::vector<std::string>{"P01", "P02"});
    CHECK(h.Ctl("alice", {"report", "run", "no-such-report"}).exit_code == 4);
    CtlRun bad = h.Ctl("alice", {"report", "run", "devices-by-os", "--param", "x=1"});
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("takes no parameter \"x\"") != std::string::npos);
  }

  {  // Replication links, live from the site server, and their diagnosis.
    // Live state: both links active (polled: a link may be reconnecting).
    CtlRun links;
    bool both = WaitFor(
        [&] {
          links = h.Ctl("alice", {"get", "links", "-o", "csv"});
          return links.exit_code == 0 &&
                 links.out.find("P01,child,active,yes,") != std::string::npos &&
                 links.out.find("P02,child,active,yes,") != std::string::npos;
        },
        seconds(30));
    INFO(links.out << links.err);
    CHECK(both);
    CtlRun d;
    bool healthy = WaitFor(
        [&] {
          d = h.Ctl("alice", {"diagnose", "link", "P01"});
          return d.exit_code == 0 && d.out.find("active: connected") != std::string::npos;
        },
        seconds(30));
    INFO(d.out << d.err);
    CHECK(healthy);
    CHECK(d.out.find("behind") == std::string::npos);  // an up-to-date peer is not "behind"
    CHECK(h.Ctl("alice", {"diagnose", "link", "P09"}).exit_code == 4);
    CtlRun p02 = h.Ctl("alice", {"get", "links"}, h.pv_p02.get());
    CHECK(p02.exit_code == 0);
    CHECK(p02.err.find("no site_address") != std::string::npos);
    CHECK(p02.out.find("CAS") != std::string::npos);
    // Re-initialize: the CAS takes a fresh snapshot of P01's data.
    auto snapshots = [&] {
      std::string log = h.cas->LogText();
      size_t n = 0;
      for (size_t at = log.find("link.snapshot_applied peer=P01"); at != std::string::npos;
           at = log.find("link.snapshot_applied peer=P01", at + 1)) {
        ++n;
      }
      return n;
    };
    const size_t before = snapshots();
    CtlRun re = h.Ctl("alice", {"diagnose", "link", "P01", "--reinitialize"});
    INFO(re.out << re.err);
    REQUIRE(re.exit_code == 0);
    CHECK(re.out.find("re-initialization requested") != std::string::npos);
    h.p01->db().Exec("UPDATE devices SET last_seen_at = now() WHERE name = 't-a1'");
    CHECK(WaitFor([&] { return snapshots() > before; }, seconds(60)));
    CHECK(WaitFor([&] { return h.p01->LinkActive("CAS"); }, seconds(30)));
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM devices") == 10);
    CHECK(Members(h.cas->db(), "Old OpenSSL") == "t-a1,t-a3,t-a4,t-b1,t-b2,t-s1");
    CHECK(h.cas->db().ScalarInt(
              "SELECT count(*) FROM audit_log WHERE action = 'reinitialize' AND object_name = "
              "'P01' AND admin = 'alice'") == 1);
  }

  {  // Boundaries authored at the CAS reach the MPs: an agent in the range is
     // sent to the group's site (S01), through P01's MP.
    REQUIRE(h.Ctl("alice", {"create", "boundary-group", "Branch", "--site", "S01"}).exit_code == 0);
    CtlRun b = h.Ctl("alice", {"create", "boundary", "Branch LAN", "--value", "10.99.0.0/16",
                               "--group", "Branch"});
    INFO(b.err);
    REQUIRE(b.exit_code == 0);
    Sim& a1 = h.Find("t-a1");
    std::string site;
    bool located = WaitFor(
        [&] {
          v1::LocateRequest req;
          req.add_ip_addresses("10.99.4.20");
          v1::ServiceLocation loc;
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
          if (!a1.client->stub().Locate(&ctx, req, &loc).ok()) return false;
          site = loc.assigned_site();
          return site == "S01";
        },
        seconds(30));
    INFO("located at " << site);
    CHECK(located);
    CHECK(Eventually(h.s01->db(), "SELECT value FROM boundaries WHERE name = 'Branch LAN'",
                     "10.99.0.0/16"));
    CtlRun bad = h.Ctl(
        "alice", {"create", "boundary", "Bad", "--value", "10.99.0.0/33", "--group", "Branch"});
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("expected a subnet like 10.1.0.0/16") != std::string::npos);
    CHECK(h.Ctl("alice", {"create", "boundary-group", "Top", "--site", "CAS"}).exit_code == 1);
    CtlRun busy = h.Ctl("alice", {"delete", "boundary-group", "Branch"});
    CHECK(busy.exit_code == 1);
    CHECK(busy.err.find("still has boundaries: Branch LAN") != std::string::npos);
    CtlRun list = h.Ctl("alice", {"get", "boundaries", "-o", "csv"});
    CHECK(list.out.find("Branch LAN,10.99.0.0/16,Branch") != std::string::npos);
    CHECK(h.Ctl("alice", {"delete", "boundary", "Branch LAN"}).exit_code == 0);
    CHECK(h.Ctl("alice", {"delete", "boundary-group", "Branch"}).exit_code == 0);
  }

  {  // Bad queries are refused with a clear error and change nothing.
    struct Bad {
      std::vector<std::string> args;
      std::string error;
    };
    std::vector<Bad> bad = {
        {{"create", "collection", "Bad1", "--query", R"(os.name = "x"; drop table devices; --)"},
         "character 14: unexpected character ';'"},
        {{"create", "collection", "Bad2", "--query", R"(memory.total_mb >= "4096")"},
         "memory.total_mb is a number"},
        {{"create", "collection", "Bad3", "--query", R"(os.nmae = "Debian")"},
         "unknown field os.nmae"},
        {{"create", "collection", "Bad4", "--include", "No such collection"},
         "no collection \"No such collection\""},
        {{"get", "devices", "--filter", R"(software.name = )"}, "expected a value"},
    };
    for (const auto& b : bad) {
      CtlRun r = h.Ctl("alice", b.args);
      INFO(absl::StrJoin(b.args, " ") << " -> " << r.err);
      CHECK(r.exit_code != 0);
      CHECK(r.err.find(b.error) != std::string::npos);
    }
    // The tool shows where: the query, and a caret under the character.
    CtlRun caret = h.Ctl(
        "alice", {"create", "collection", "Bad6", "--query", R"(os.name = "x" and os.nmae = "y")"});
    CHECK(caret.exit_code == 1);
    CHECK(caret.err.find("  os.name = \"x\" and os.nmae = \"y\"\n                       ^\n") !=
          std::string::npos);
    CHECK(h.cas->db().Scalar("SELECT count(*) FROM collections WHERE name LIKE 'Bad%'") == "0");
    // Rules added later get names of their own.
    REQUIRE(h.Ctl("alice", {"create", "collection", "Two rules", "--query", R"(os.name = "a")"})
                .exit_code == 0);
    CtlRun more =
        h.Ctl("alice", {"update", "collection", "Two rules", "--add-query", R"(os.name = "b")"});
    INFO(more.err);
    CHECK(more.exit_code == 0);
    CHECK(h.cas->db().Scalar("SELECT string_agg(name, ',' ORDER BY name) FROM collection_rules "
                             "WHERE collection = 'Two rules'") == "query-1,query-2");
    // A like pattern PostgreSQL would refuse at run time is refused up front.
    CtlRun like =
        h.Ctl("alice", {"create", "collection", "Bad5", "--query", R"(software.name like "x\\")"});
    CHECK(like.exit_code == 1);
    CHECK(like.err.find("cannot end with a lone") != std::string::npos);
    CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM devices") == 10);
  }

  {  // Exit codes separate usage, not found, denied and unavailable.
    CHECK(h.Ctl("alice", {"get", "nonsense"}).exit_code == 2);
    CHECK(h.Ctl("alice", {"frobnicate"}).exit_code == 2);
    CHECK(h.Ctl("alice", {"describe", "collection", "Nope"}).exit_code == 4);
    CHECK(h.Ctl("alice", {"create", "collection", "Old OpenSSL"}).exit_code == 1);  // exists
    CHECK(h.Ctl("bob", {"get", "sites"}).exit_code == 3);  // not an administrator
    CtlRun down = Stratactl(h.dir, "unix:" + h.dir.path() + "/nothing.sock", "alice",
                            {"--timeout", "3", "get", "sites"});
    CHECK(down.exit_code == 5);
    CHECK(h.Ctl("alice", {"--help"}).exit_code == 0);
    CHECK(h.Ctl("alice", {"get", "--help"}).out.find("--filter") != std::string::npos);
  }

  {  // A client that is not our code (grpc-js) discovers the API by reflection,
     // checks health, and lists devices from the .proto file.
    const char* modules = std::getenv("STRATA_NODE_MODULES");
    INFO("STRATA_NODE_MODULES is set by tests/run.sh (npm ci of tests/node)");
    REQUIRE(modules != nullptr);
    std::string out = RunCommand(absl::StrCat(
        "NODE_PATH='", modules, "' node '", SourceDir(), "/tests/node/client.js' '",
        h.pv_cas->address(), "' '", TestPki(), "/ca.pem' '", TestPki(), "/admin-alice.pem' '",
        TestPki(), "/admin-alice.key' '", SourceDir(), "/proto' 2>&1; echo \"rc=$?\""));
    INFO(out);
    CHECK(out.find("rc=0") != std::string::npos);
    CHECK(out.find("\"grpc.health.v1.Health\"") != std::string::npos);
    CHECK(out.find("\"grpc.reflection.v1alpha.ServerReflection\"") != std::string::npos);
    // One service per resource of the admin API (proto/strata/v1/admin/).
    CHECK(out.find("\"strata.v1.DeviceService\"") != std::string::npos);
    CHECK(out.find("\"strata.v1.CollectionService\"") != std::string::npos);
    CHECK(out.find("\"strata.v1.EnrollmentTokenService\"") != std::string::npos);
    CHECK(out.find("\"health\":\"SERVING\"") != std::string::npos);
    // Alice sees every device: the nine simulated clients and the real agent.
    size_t listed = 0;
    for (size_t at = out.find("\"t-"); at != std::string::npos; at = out.find("\"t-", at + 1)) {
      ++listed;
    }
    CHECK(listed == 9);
    CHECK(out.find("\"devices\":[") != std::string::npos);
  }

  {  // A provider refuses to run at a secondary site.
    ProviderProcess pv("S01", h.dir, h.s01->db(), h.s01->address());
    pv.StartNoWait();
    CHECK(pv.Wait(seconds(30)) == 1);
    CHECK(pv.LogText().find("S01 is a secondary site") != std::string::npos);
  }
}

TEST_CASE(
    "RBAC: roles, scopes by collection and custom roles are enforced, denials audited "
    "and visible at the CAS",
    "[admin]") {
  AdminHierarchy h;
  REQUIRE(h.Ctl("alice", {"set", "admin", "bob", "--role", "Read-only Analyst"}).exit_code == 0);
  REQUIRE(Eventually(h.p01->db(), "SELECT count(*) FROM administrators WHERE name = 'bob'", "1"));

  // A Read-only Analyst cannot create, at the CAS or at a primary.
  CtlRun r = h.Ctl("bob", {"create", "collection", "Bobs", "--query", R"(os.name = "x")"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("bob lacks the permission collection.create") != std::string::npos);
  r = h.Ctl("bob", {"create", "collection", "Bobs", "--query", R"(os.name = "x")"}, h.pv_p01.get());
  CHECK(r.exit_code == 3);
  CHECK(h.Ctl("bob", {"get", "devices", "-o", "csv"}).exit_code == 0);  // reading is allowed
  CHECK(h.Ctl("bob", {"diagnose", "link", "P01"}).exit_code == 0);
  r = h.Ctl("bob", {"diagnose", "link", "P01", "--reinitialize"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("bob lacks the permission link.reinit") != std::string::npos);

  // An admin limited to a collection of P01's devices sees none of P02's.
  REQUIRE(
      h.Ctl("alice", {"create", "collection", "P01 devices", "--query", R"(device.site = "P01")"})
          .exit_code == 0);
  REQUIRE(MembersBecome(h.cas->db(), "P01 devices", Members(h.p01->db(), "All Systems")));
  REQUIRE(h.Ctl("alice", {"set", "admin", "carol", "--role", "Operations Administrator",
                          "--collection", "P01 devices"})
              .exit_code == 0);
  CtlRun seen = h.Ctl("carol", {"get", "devices", "-o", "csv", "--all"});
  INFO(seen.err);
  REQUIRE(seen.exit_code == 0);
  std::vector<std::string> names = FirstColumn(seen.out);
  CHECK(names.size() == 7);  // 4 + 2 under S01 + the real agent
  for (const auto& n : names) CHECK(n.rfind("t-b", 0) != 0);
  // Reports about devices cover only carol's collections.
  CtlRun report = h.Ctl("carol", {"report", "run", "devices-by-os", "-o", "csv"});
  REQUIRE(report.exit_code == 0);
  int64_t total = 0;
  for (absl::string_view line : absl::StrSplit(report.out, '\n', absl::SkipEmpty())) {
    int64_t n = 0;
    if (absl::SimpleAtoi(line.substr(line.rfind(',') + 1), &n)) total += n;
  }
  CHECK(total == 7);
  r = h.Ctl("carol", {"describe", "device", "t-b1"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("carol may not see device \"t-b1\"") != std::string::npos);
  // Nor can she widen her view: the collection that bounds it is not hers to
  // change, and what she makes stays inside it.
  r = h.Ctl("carol", {"update", "collection", "P01 devices", "--add-include", "All Systems"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("bound what carol sees") != std::string::npos);
  r = h.Ctl("carol", {"create", "collection", "Everything", "--query", "device.active = true"});
  CHECK(r.exit_code == 3);  // limited by All Systems, outside her collections
  r = h.Ctl("carol", {"create", "collection", "P01 Debian", "--limiting", "P01 devices", "--query",
                      R"(os.name = "Debian GNU/Linux")"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  // Client settings go only to collections within hers.
  REQUIRE(
      h.Ctl("alice", {"create", "client-setting", "Carols", "--policy-poll", "30m"}).exit_code ==
      0);
  r = h.Ctl("carol", {"deploy", "client-setting", "Carols", "--collection", "All Systems"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("carol may only use collections within their own") != std::string::npos);
  r = h.Ctl("carol", {"deploy", "client-setting", "Carols", "--collection", "P01 Debian"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  // ... and she changes no setting that reaches devices outside them.
  r = h.Ctl("carol",
            {"update", "client-setting", "Default Client Settings", "--approval-mode", "auto"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("they reach every client") != std::string::npos);
  CHECK(h.cas->db().Scalar("SELECT approval_mode FROM client_settings WHERE builtin") == "token");

  // Nobody hands out more than they hold, or changes their own rights.
  REQUIRE(h.Ctl("alice", {"create", "role", "Helpdesk", "--from", "Read-only Analyst", "--add",
                          "admin.create", "--add", "admin.update"})
              .exit_code == 0);
  REQUIRE(h.Ctl("alice", {"set", "admin", "erin", "--role", "Helpdesk"}).exit_code == 0);
  r = h.Ctl("erin", {"set", "admin", "erin", "--role", "Full Administrator"});
  CHECK(r.exit_code == 3);
  r = h.Ctl("erin", {"set", "admin", "frank", "--role", "Full Administrator"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("erin may not give or change roles holding *") != std::string::npos);
  CHECK(h.Ctl("erin", {"set", "admin", "frank", "--role", "Read-only Analyst"}).exit_code == 0);
  CHECK(h.cas->db().Scalar("SELECT roles::text FROM administrators WHERE name = 'erin'") ==
        "{Helpdesk}");

  // A custom role without "delete collection".
  r = h.Ctl("alice", {"create", "role", "No Delete", "--from", "Operations Administrator",
                      "--remove", "collection.delete"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(h.Ctl("alice", {"set", "admin", "dave", "--role", "No Delete"}).exit_code == 0);
  r = h.Ctl("dave", {"delete", "collection", "P01 devices"});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("dave lacks the permission collection.delete") != std::string::npos);
  CHECK(h.cas->db().Scalar("SELECT count(*) FROM collections WHERE name = 'P01 devices'") == "1");
  CHECK(h.Ctl("dave", {"create", "collection", "Daves", "--query", R"(os.name = "x")"}).exit_code ==
        0);  // the rest of the copied role still works

  // Each denial is in the audit log at the CAS, the one at P01 by replication.
  bool all = WaitFor(
      [&] {
        return h.cas->db().Scalar(
                   "SELECT string_agg(DISTINCT admin || '@' || site_code, ',') FROM audit_log "
                   "WHERE outcome = 'denied'") == "bob@CAS,bob@P01,carol@CAS,dave@CAS,erin@CAS";
      },
      seconds(30));
  INFO(
      h.cas->db().Scalar("SELECT string_agg(admin || '@' || site_code || ': ' || summary, E'\\n') "
                         "FROM audit_log"));
  CHECK(all);
  CtlRun audit = h.Ctl("alice", {"get", "audit", "--filter", "denied", "-o", "csv"});
  REQUIRE(audit.exit_code == 0);
  CHECK(static_cast<int64_t>(FirstColumn(audit.out).size()) ==
        h.cas->db().ScalarInt("SELECT count(*) FROM audit_log WHERE outcome = 'denied'"));
  CHECK(FirstColumn(audit.out).size() >= 8);
  // And every change, with who and what.
  CHECK(h.cas->db()
            .Scalar("SELECT summary FROM audit_log WHERE action = 'create' AND "
                    "object_name = 'No Delete'")
            .find("copy of Operations Administrator") != std::string::npos);
}

TEST_CASE(
    "client settings deployed to a collection reach the real agent through its MP's policy, "
    "at a primary and through a secondary; other agents are not disturbed",
    "[admin]") {
  AdminHierarchy h;
  // The real agent of this machine as a service at P01 (the identity the
  // hierarchy registered), and a second one at the secondary S01.
  AgentDaemon p01_agent(h.dir, "real", h.mps["P01"]->address());
  AgentDaemon s01_agent(h.dir, "branch", h.mps["S01"]->address(),
                        {"--token=" + std::string(kAdminTestToken), "--hardware_id=hw-branch"});
  size_t at_p01 = p01_agent.WaitForLog("agent.nudge_connected");
  size_t at_s01 = s01_agent.WaitForLog("agent.nudge_connected");
  INFO(p01_agent.LogText() << s01_agent.LogText());
  REQUIRE(at_p01 != std::string::npos);
  REQUIRE(at_s01 != std::string::npos);
  const std::string branch_id = AgentClientId(h.dir, "branch");
  REQUIRE(
      Eventually(h.p01->db(), "SELECT count(*) FROM devices WHERE id = '" + branch_id + "'", "1"));
  REQUIRE(p01_agent.WaitForLog("poll_s=3600") != std::string::npos);  // the default

  // A custom setting, deployed at the CAS to a collection holding only the
  // P01 agent: that agent is told at once and polls every two minutes.
  CtlRun r = h.Ctl("alice", {"create", "client-setting", "Fast policy", "--policy-poll", "2m",
                             "--priority", "5", "--description", "pilot machines"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(h.Ctl("alice", {"create", "collection", "Pilot", "--device", h.agent_id}).exit_code == 0);
  r = h.Ctl("alice", {"deploy", "client-setting", "Fast policy", "--collection", "Pilot"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  at_p01 = p01_agent.WaitForLog("kind=POLICY_CHANGED", at_p01, seconds(60));
  REQUIRE(at_p01 != std::string::npos);
  at_p01 = p01_agent.WaitForLog("poll_s=120", at_p01);
  REQUIRE(at_p01 != std::string::npos);
  CHECK(Eventually(
      h.s01->db(),
      "SELECT count(*) FROM client_setting_assignments WHERE device_id = '" + h.agent_id + "'",
      "1"));  // site_proxy: down to P01's secondary too
  // The S01 agent's policy did not change: it was not told.
  CHECK(s01_agent.LogText().find("kind=POLICY_CHANGED", at_s01) == std::string::npos);

  // The S01 agent joins the collection: its primary resolves it, the
  // assignment replicates down to S01, whose MP tells it.
  r = h.Ctl("alice", {"update", "collection", "Pilot", "--add-device", branch_id});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  at_s01 = s01_agent.WaitForLog("poll_s=120", at_s01, seconds(60));
  INFO(s01_agent.LogText());
  REQUIRE(at_s01 != std::string::npos);
  CtlRun d = h.Ctl("alice", {"describe", "device", branch_id, "-o", "json"});
  REQUIRE(d.exit_code == 0);
  INFO(d.out);
  CHECK(d.out.find("\"Fast policy\"", d.out.find("\"client_settings\"")) != std::string::npos);
  CHECK(d.out.find("\"policy_poll_seconds\": \"120\"") != std::string::npos);
  // A collection with a deployment is not deleted from under it.
  r = h.Ctl("alice", {"delete", "collection", "Pilot"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("client setting Fast policy") != std::string::npos);
  CtlRun listed;
  CHECK(WaitFor(
      [&] {
        listed = h.Ctl("alice", {"get", "client-settings", "-o", "csv"});
        return listed.out.find("Fast policy,5,2m,-,-,-,-,Pilot,2\n") != std::string::npos;
      },
      seconds(30)));
  INFO(listed.out);
  CHECK(listed.out.find("Default Client Settings,10000,1h,7d,7d,5m,token,(every client),") !=
        std::string::npos);

  // A changed value reaches both; taking the deployment away returns both
  // to the default.
  r = h.Ctl("alice", {"update", "client-setting", "Fast policy", "--policy-poll", "90"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  at_p01 = p01_agent.WaitForLog("poll_s=90", at_p01, seconds(60));
  at_s01 = s01_agent.WaitForLog("poll_s=90", at_s01, seconds(60));
  CHECK(at_p01 != std::string::npos);
  CHECK(at_s01 != std::string::npos);
  REQUIRE(h.Ctl("alice", {"undeploy", "client-setting", "Fast policy", "--collection", "Pilot"})
              .exit_code == 0);
  CHECK(p01_agent.WaitForLog("poll_s=3600", at_p01, seconds(60)) != std::string::npos);
  CHECK(s01_agent.WaitForLog("poll_s=3600", at_s01, seconds(60)) != std::string::npos);

  // Bad input: a clear error, a distinct exit code, nothing changed.
  struct Bad {
    std::vector<std::string> args;
    int exit_code;
    std::string error;
  };
  const std::vector<Bad> bad = {
      {{"create", "client-setting", "Empty"}, 1, "must set at least one of"},
      {{"create", "client-setting", "Zero", "--policy-poll", "0"},
       1,
       "policy_poll_seconds: 1 to 2678400 seconds"},
      {{"create", "client-setting", "Typo", "--policy-poll", "5x"},
       2,
       "takes seconds or a duration"},
      {{"create", "client-setting", "Same", "--policy-poll", "1h", "--priority", "5"},
       1,
       "priority 5 is held by client setting \"Fast policy\""},
      {{"update", "client-setting", "Default Client Settings", "--clear", "policy-poll"},
       1,
       "set every field"},
      {{"update", "client-setting", "Fast policy", "--approval-mode", "auto"},
       1,
       "only the Default Client Settings have one"},
      {{"deploy", "client-setting", "Default Client Settings", "--collection", "Pilot"},
       1,
       "only custom settings are deployed"},
      {{"deploy", "client-setting", "Fast policy", "--collection", "No such"},
       4,
       "no collection \"No such\""},
      {{"delete", "client-setting", "Default Client Settings"}, 1, "built in"},
  };
  for (const auto& b : bad) {
    CtlRun x = h.Ctl("alice", b.args);
    INFO(absl::StrJoin(b.args, " ") << ": " << x.err);
    CHECK(x.exit_code == b.exit_code);
    CHECK(x.err.find(b.error) != std::string::npos);
  }
  CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM client_settings") == 2);
  CHECK(h.cas->db().ScalarInt("SELECT count(*) FROM client_setting_deployments") == 0);

  // The approval mode lives in the default, and reaches the secondary.
  r = h.Ctl("alice",
            {"update", "client-setting", "Default Client Settings", "--approval-mode", "manual"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(Eventually(h.s01->db(),
                   "SELECT approval_mode FROM client_settings WHERE name = 'Default Client "
                   "Settings'",
                   "manual"));
  // Every change is audited.
  CHECK(h.cas->db().Scalar("SELECT string_agg(action, ',' ORDER BY at) FROM audit_log WHERE "
                           "object_type = 'client setting' AND outcome = 'ok'") ==
        "create,deploy,update,undeploy,update");
  CHECK(p01_agent.Stop() == 0);
  CHECK(s01_agent.Stop() == 0);
}
