// Live queries in the query language (query.h): what they may ask, and the
// rows they select over a device's facts.

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "common/collections/query.h"

using namespace strata::collections;

namespace {

DeviceFacts Facts() {
  DeviceFacts f;
  f["device"] = {{{"name", "web1"}, {"site", "P01"}, {"active", "true"}}};
  f["os"] = {{{"name", "Debian GNU/Linux"}, {"version", "12"}, {"id", "debian"}}};
  f["software"] = {{{"name", "openssl"}, {"version", "3.0.9"}, {"architecture", "amd64"}},
                   {{"name", "openssl"}, {"version", "3.0.11"}, {"architecture", "i386"}},
                   {{"name", "bash"}, {"version", "5.2"}, {"architecture", "amd64"}}};
  f["socket"] = {{{"protocol", "tcp"}, {"address", "0.0.0.0"}, {"port", "22"}, {"process", "sshd"}},
                 {{"protocol", "tcp6"}, {"address", "::"}, {"port", "443"}, {"process", "nginx"}},
                 {{"protocol", "udp"}, {"address", "0.0.0.0"}, {"port", "68"}}};
  return f;
}

std::string Error(const std::string& q, const std::vector<std::string>& select) {
  auto s = CheckLiveQuery(q, select);
  return s.ok() ? "" : std::string(s.status().message());
}

std::vector<std::vector<std::string>> Rows(const std::string& q,
                                           const std::vector<std::string>& select, size_t max = 100,
                                           bool* cut = nullptr) {
  bool truncated = false;
  auto rows = SelectRows(q, select, Facts(), max, &truncated);
  REQUIRE(rows.ok());
  if (cut) *cut = truncated;
  return *rows;
}

}  // namespace

TEST_CASE("live classes are for live queries only, not collections or requirements") {
  auto sql = CompileQuery("process.name = \"sshd\"");
  REQUIRE_FALSE(sql.ok());
  CHECK(absl::StrContains(sql.status().message(), "process is read live on clients"));
  CHECK_FALSE(EvaluateQuery("socket.port = 22", Facts()).ok());
  CHECK(CheckLiveQuery("process.name = \"sshd\"", {"process.pid"}).ok());
}

TEST_CASE("a live query's select is checked: known fields, one many-rowed class, files named") {
  CHECK(absl::StrContains(Error("os.id = \"debian\"", {}), "select: 1 to 16"));
  CHECK(absl::StrContains(Error("os.id = \"debian\"", {"os.nmae"}), "unknown field \"os.nmae\""));
  CHECK(absl::StrContains(Error("os.id = \"debian\"", {"software.name", "process.name"}),
                          "fields of software and of process"));
  CHECK(absl::StrContains(Error("file.exists = true", {"file.sha256"}), "say which files"));
  CHECK(absl::StrContains(Error("os.id = ", {"os.id"}), "query: character"));
  auto spec =
      CheckLiveQuery("file.path in (\"/etc/passwd\", \"/etc/group\") and os.id = \"debian\"",
                     {"device.name", "file.sha256"});
  REQUIRE(spec.ok());
  CHECK(spec->multi == "file");
  CHECK(spec->file_paths == std::vector<std::string>{"/etc/passwd", "/etc/group"});
  CHECK(spec->classes == std::set<std::string>{"device", "file", "os"});
}

TEST_CASE("a live query gives a row per matching row of its many-rowed class") {
  // The rows of openssl, each with the device's name.
  CHECK(Rows("software.name = \"openssl\"", {"device.name", "software.version"}) ==
        std::vector<std::vector<std::string>>{{"web1", "3.0.9"}, {"web1", "3.0.11"}});
  // Comparisons on the class hold for the same row (versions as versions).
  CHECK(Rows("software.name = \"openssl\" and software.version < \"3.0.10\"",
             {"software.architecture"}) == std::vector<std::vector<std::string>>{{"amd64"}});
  // Listening sockets on privileged ports.
  CHECK(Rows("socket.protocol like \"tcp%\" and socket.port < 1024",
             {"socket.port", "socket.process"}) ==
        std::vector<std::vector<std::string>>{{"22", "sshd"}, {"443", "nginx"}});
  // Without a many-rowed column: one row for a matching device.
  CHECK(Rows("software.name = \"bash\"", {"device.name", "os.version"}) ==
        std::vector<std::vector<std::string>>{{"web1", "12"}});
  // A device that does not match gives none.
  CHECK(Rows("os.id = \"rhel\"", {"device.name"}).empty());
  CHECK(Rows("software.name = \"zsh\"", {"software.version"}).empty());
  // A field a row lacks is empty.
  CHECK(Rows("socket.protocol = \"udp\"", {"socket.process"}) ==
        std::vector<std::vector<std::string>>{{""}});
}

TEST_CASE("a live query's rows per device are bounded") {
  bool cut = false;
  auto rows = Rows("socket.port > 0", {"socket.port"}, 2, &cut);
  CHECK(rows.size() == 2);
  CHECK(cut);
  rows = Rows("socket.port > 0", {"socket.port"}, 3, &cut);
  CHECK(rows.size() == 3);
  CHECK_FALSE(cut);
}
