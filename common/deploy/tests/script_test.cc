// The checks of script definitions and of the values a run gives their
// parameters (common/deploy/script.h).

#include "common/deploy/script.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"

using namespace strata;

namespace {

v1::Script Valid() {
  v1::Script s;
  s.set_name("hello");
  s.set_body("echo hello \"$who\"\n");
  auto* p = s.add_parameters();
  p->set_name("who");
  p->set_regex("[a-z]+");
  p->set_max_length(16);
  return s;
}

std::string Error(v1::Script s) {
  absl::Status st = deploy::CheckScript(s);
  return st.ok() ? "" : std::string(st.message());
}

google::protobuf::RepeatedPtrField<v1::ScriptArgument> Args(
    std::vector<std::pair<std::string, std::string>> kv) {
  google::protobuf::RepeatedPtrField<v1::ScriptArgument> out;
  for (auto& [k, v] : kv) {
    auto* a = out.Add();
    a->set_name(k);
    a->set_value(v);
  }
  return out;
}

}  // namespace

TEST_CASE("a valid script gets its defaults: bash, 600 s, string parameters", "[script]") {
  v1::Script s = Valid();
  REQUIRE(deploy::CheckScript(s).ok());
  CHECK(s.interpreter() == "bash");
  CHECK(s.timeout_seconds() == 600);
  CHECK(s.parameters(0).type() == "string");
  s.set_run_as("root");
  REQUIRE(deploy::CheckScript(s).ok());
  CHECK(s.run_as().empty());
}

TEST_CASE("bad script definitions are refused naming the field", "[script]") {
  v1::Script s = Valid();
  s.set_interpreter("perl");
  CHECK(absl::StrContains(Error(s), "interpreter"));
  s = Valid();
  s.set_body("");
  CHECK(absl::StrContains(Error(s), "body"));
  s.set_body(std::string(256 * 1024 + 1, 'x'));
  CHECK(absl::StrContains(Error(s), "body"));
  s.set_body(std::string("a\0b", 3));
  CHECK(absl::StrContains(Error(s), "not text"));
  s = Valid();
  s.set_timeout_seconds(86401);
  CHECK(absl::StrContains(Error(s), "timeout_seconds"));
  s = Valid();
  s.set_run_as("-rf");
  CHECK(absl::StrContains(Error(s), "run_as"));
  s = Valid();
  s.mutable_parameters(0)->set_name("PATH");
  CHECK(absl::StrContains(Error(s), "[a-z0-9_]"));
  s = Valid();
  s.mutable_parameters(0)->set_regex("([a-z");
  CHECK(absl::StrContains(Error(s), "regex"));
  s = Valid();
  *s.add_parameters() = s.parameters(0);
  CHECK(absl::StrContains(Error(s), "declared twice"));
  s = Valid();
  for (int i = 0; i < 10; ++i) s.add_parameters()->set_name("p" + std::to_string(i));
  CHECK(absl::StrContains(Error(s), "at most 10"));
  s = Valid();
  s.mutable_parameters(0)->set_type("enum");
  CHECK(absl::StrContains(Error(s), "string parameters"));
  s = Valid();
  s.mutable_parameters(0)->set_default_value("UPPER");
  CHECK(absl::StrContains(Error(s), "default"));
}

TEST_CASE("a run's arguments are checked against the parameters' rules", "[script]") {
  v1::Script s = Valid();
  auto* n = s.add_parameters();
  n->set_name("count");
  n->set_type("int");
  n->set_min(1);
  n->set_max(5);
  n->set_default_value("2");
  auto* e = s.add_parameters();
  e->set_name("mode");
  e->set_type("enum");
  e->add_allowed("fast");
  e->add_allowed("slow");
  e->set_required(true);
  REQUIRE(deploy::CheckScript(s).ok());

  auto ok = deploy::ResolveArguments(s.parameters(), Args({{"who", "bob"}, {"mode", "fast"}}));
  REQUIRE(ok.ok());
  REQUIRE(ok->size() == 3);
  CHECK((*ok)[0].value() == "bob");
  CHECK((*ok)[1].value() == "2");  // the default
  CHECK((*ok)[2].value() == "fast");

  auto message = [&](std::vector<std::pair<std::string, std::string>> kv) {
    auto r = deploy::ResolveArguments(s.parameters(), Args(std::move(kv)));
    return r.ok() ? std::string() : std::string(r.status().message());
  };
  CHECK(absl::StrContains(message({{"who", "Bob; rm -rf /"}, {"mode", "fast"}}),
                          "does not match [a-z]+"));
  CHECK(absl::StrContains(message({{"who", "bob"}}), "\"mode\": required"));
  CHECK(absl::StrContains(message({{"who", "bob"}, {"mode", "medium"}}), "not one of fast, slow"));
  CHECK(absl::StrContains(message({{"count", "9"}, {"mode", "fast"}}), "not in 1..5"));
  CHECK(absl::StrContains(message({{"count", "two"}, {"mode", "fast"}}), "not an integer"));
  CHECK(absl::StrContains(message({{"nope", "x"}, {"mode", "fast"}}), "no such parameter"));
  CHECK(absl::StrContains(message({{"who", std::string(17, 'a')}, {"mode", "fast"}}), "length 17"));
  CHECK(absl::StrContains(message({{"who", "a\nb"}, {"mode", "fast"}}), "one line"));
}

TEST_CASE("parameter and argument lists survive their stored JSON", "[script]") {
  v1::Script s = Valid();
  REQUIRE(deploy::CheckScript(s).ok());
  google::protobuf::RepeatedPtrField<v1::ScriptParameter> back;
  REQUIRE(deploy::ParseParameters(deploy::ParametersJson(s.parameters()), &back).ok());
  REQUIRE(back.size() == 1);
  CHECK(back[0].regex() == "[a-z]+");
  google::protobuf::RepeatedPtrField<v1::ScriptArgument> args;
  REQUIRE(deploy::ParseArguments(deploy::ArgumentsJson(Args({{"who", "x"}})), &args).ok());
  CHECK(args[0].value() == "x");
  CHECK(!deploy::ParseArguments("{not json", &args).ok());
}
