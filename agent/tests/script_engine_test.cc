// The script engine on the real machine: real processes and files; the
// results go to a list instead of an MP (the end-to-end path, with
// approval, scope and the hierarchy, is tests/script_test.cc).

#include "agent/script_engine.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/content/hash.h"

using namespace strata;
using namespace strata::agent;

namespace {

struct Dir {
  std::string path;
  Dir() {
    char t[] = "/tmp/st-scripts-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Sink {
  absl::Mutex mu;
  std::vector<v1::ScriptResult> results;
  std::function<absl::Status(v1::ClientReport)> Fn() {
    return [this](v1::ClientReport r) {
      absl::MutexLock lock(&mu);
      results.push_back(r.script());
      return absl::OkStatus();
    };
  }
  // The final results (not "running").
  std::vector<v1::ScriptResult> Final() {
    absl::MutexLock lock(&mu);
    std::vector<v1::ScriptResult> out;
    for (const auto& r : results)
      if (r.state() != v1::SCRIPT_RUN_STATE_RUNNING) out.push_back(r);
    return out;
  }
};

v1::ScriptRunPolicy Run(const std::string& id, const std::string& body) {
  v1::ScriptRunPolicy r;
  r.set_name(id);
  r.set_script("s");
  r.set_interpreter("bash");
  r.set_body(body);
  r.set_sha256(content::Sha256::Of(body));
  r.set_timeout_seconds(30);
  r.set_expires_unix_ms(absl::ToUnixMillis(absl::Now() + absl::Hours(1)));
  return r;
}

}  // namespace

TEST_CASE("a script run runs once, with its parameters in the environment, even across restarts",
          "[scripts]") {
  Dir dir;
  const std::string marks = dir.path + "/marks";
  v1::ScriptRunPolicy run = Run("11111111-1111-1111-1111-111111111111",
                                absl::StrCat("echo ran >> ", marks, "; echo \"hi $who\"; exit 3"));
  auto* a = run.add_arguments();
  a->set_name("who");
  a->set_value("$(touch " + dir.path + "/spliced)");  // a value, never code
  Sink sink;
  {
    ScriptEngine engine({dir.path, sink.Fn()});
    engine.SetRuns({run});
    engine.RunPass();
    engine.RunPass();  // done: not again
  }
  {
    ScriptEngine again({dir.path, sink.Fn()});  // the agent restarted
    again.SetRuns({run});
    again.RunPass();
  }
  CHECK(Read(marks) == "ran\n");
  auto results = sink.Final();
  REQUIRE(results.size() == 1);
  CHECK(results[0].state() == v1::SCRIPT_RUN_STATE_FAILED);
  CHECK(results[0].exit_code() == 3);
  CHECK(results[0].output() == absl::StrCat("hi $(touch ", dir.path, "/spliced)\n"));
  CHECK_FALSE(std::filesystem::exists(dir.path + "/spliced"));
  CHECK(results[0].started_unix_ms() > 0);
  CHECK(results[0].finished_unix_ms() >= results[0].started_unix_ms());
}

TEST_CASE("a body that is not the approved one, or a run learnt of after its expiry, never runs",
          "[scripts]") {
  Dir dir;
  Sink sink;
  v1::ScriptRunPolicy tampered =
      Run("22222222-2222-2222-2222-222222222222", "touch " + dir.path + "/approved");
  tampered.set_body("touch " + dir.path + "/tampered");
  v1::ScriptRunPolicy late =
      Run("33333333-3333-3333-3333-333333333333", "touch " + dir.path + "/late");
  late.set_expires_unix_ms(absl::ToUnixMillis(absl::Now() - absl::Minutes(1)));
  ScriptEngine engine({dir.path, sink.Fn()});
  engine.SetRuns({tampered, late});
  engine.RunPass();
  auto results = sink.Final();
  REQUIRE(results.size() == 2);
  CHECK(results[0].state() == v1::SCRIPT_RUN_STATE_FAILED);
  CHECK(absl::StrContains(results[0].detail(), "refused: the body's SHA-256 is"));
  CHECK(results[1].state() == v1::SCRIPT_RUN_STATE_EXPIRED);
  CHECK(absl::StrContains(results[1].detail(), "after its expiry"));
  CHECK_FALSE(std::filesystem::exists(dir.path + "/tampered"));
  CHECK_FALSE(std::filesystem::exists(dir.path + "/late"));
}

TEST_CASE("a script left running by a stopped agent is found again and reported once it ends",
          "[scripts]") {
  Dir dir;
  Sink sink;
  v1::ScriptRunPolicy run =
      Run("44444444-4444-4444-4444-444444444444",
          absl::StrCat("while [ ! -e ", dir.path, "/go ]; do sleep 0.1; done; echo done"));
  {
    ScriptEngine engine({dir.path, sink.Fn()});
    engine.SetRuns({run});
    engine.Start();
    // Running: its record holds its pid.
    auto pid = [&] {
      v1::ScriptRecord rec;
      rec.ParseFromString(Read(dir.path + "/scripts/" + run.name() + ".pb"));
      return rec.pid();
    };
    for (int i = 0; i < 100 && pid() == 0; ++i) absl::SleepFor(absl::Milliseconds(50));
    REQUIRE(pid() > 0);
    engine.Stop();  // the script runs on
  }
  CHECK(sink.Final().empty());
  std::ofstream(dir.path + "/go") << "";
  ScriptEngine again({dir.path, sink.Fn()});
  again.SetRuns({run});
  again.RunPass();  // adopts it, waits for it
  auto results = sink.Final();
  REQUIRE(results.size() == 1);
  CHECK(results[0].state() == v1::SCRIPT_RUN_STATE_SUCCEEDED);
  CHECK(results[0].output() == "done\n");
}
