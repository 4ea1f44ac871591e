#include "common/collections/query.h"

#include <catch2/catch.hpp>

using strata::collections::CompileQuery;

TEST_CASE("a query compiles to a predicate whose values are all parameters") {
  auto q =
      CompileQuery(R"(os.name = "Debian" and memory.total_mb >= 4096 and software.name = "openssl")"
                   R"( and software.version < "3.0.11")",
                   3);
  REQUIRE(q.ok());
  CHECK(q->params == std::vector<std::string>{"Debian", "4096", "openssl", "3.0.11"});
  // Numbered from the first parameter asked for; no value is in the text.
  CHECK(q->sql.find("$3::text") != std::string::npos);
  CHECK(q->sql.find("$6::text") != std::string::npos);
  CHECK(q->sql.find("Debian") == std::string::npos);
  CHECK(q->sql.find("openssl") == std::string::npos);
  // The two software comparisons share one row (one EXISTS over device_software).
  size_t first = q->sql.find("device_software");
  REQUIRE(first != std::string::npos);
  CHECK(q->sql.find("device_software", first + 1) == std::string::npos);
}

TEST_CASE("keywords are case-insensitive and <> means !=") {
  auto a = CompileQuery(R"(NOT os.name <> "x" OR device.active = TRUE)");
  REQUIRE(a.ok());
  CHECK(a->params == std::vector<std::string>{"x", "true"});
}

TEST_CASE("a string value carries quotes and SQL as plain data") {
  auto q = CompileQuery(R"(os.name = "x\"'); drop table devices; --\\")");
  REQUIRE(q.ok());
  REQUIRE(q->params.size() == 1);
  CHECK(q->params[0] == "x\"'); drop table devices; --\\");
  CHECK(q->sql.find("drop") == std::string::npos);
}

TEST_CASE("bad queries are refused with an error pointing at the offending character") {
  struct Case {
    std::string query;
    std::string error;
  };
  std::vector<Case> cases = {
      {R"(os.nmae = "x")", "character 4: unknown field os.nmae (os has: name, version"},
      {R"(foo.bar = 1)", "character 1: unknown class 'foo'"},
      {R"(memory.total_mb >= "4096")",
       "character 20: memory.total_mb is a number; the string \"4096\" is a string"},
      {R"(os.name = 5)", "character 11: os.name is a text; '5' is a number"},
      {R"(os.name = Debian)", "character 11: expected a value after os.name, found 'Debian'"},
      {R"(os.name = "x)", "character 11: string not closed"},
      {R"(os.name = "x" and)",
       "character 18: expected a field such as os.name, found the end of the query"},
      {R"("; drop table devices; --)", "character 1: string not closed"},
      {R"("x" = os.name)", "character 1: expected a field such as os.name, found the string \"x\""},
      {R"(os.name = "x"; drop table devices; --)", "character 14: unexpected character ';'"},
      {R"(os.name = 'x')", "character 11: strings are written in double quotes"},
      {R"((os.name = "x")", "character 15: expected ')', found the end of the query"},
      {R"(os.name = "x" os.version = "1")", "character 15: expected 'and', 'or' or the end"},
      {R"(device.active > true)", "character 15: device.active is a boolean: only = and !="},
      {R"(memory.total_mb like "4%")", "like needs a text field; memory.total_mb is a number"},
      {R"(os.name == "x")", "character 9: use = to compare, not =="},
      {R"(os.name ! "x")", "unexpected '!'"},
      {R"(name = "x")", "'name' is not a field: fields are class.attribute"},
      {R"(software.name in ("a", "b")", "expected ',' or ')'"},
      {R"(software.name in "a")", "expected '(' after in"},
      {R"(os.name = "a\n")", "only \\\" and \\\\ are escapes"},
      {"", "query: empty"},
      {"   ", "query: empty"},
      {std::string("os.name = \"\xff\""), "not valid UTF-8"},
      {std::string(5000, ' '), "longer than 4096 bytes"},
      {R"(software.name like "openssl\\")", "character 20: a like pattern cannot end with a lone"},
  };
  for (const auto& c : cases) {
    INFO("query: " << c.query);
    auto q = CompileQuery(c.query);
    REQUIRE_FALSE(q.ok());
    CHECK(q.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(q.status().message()), Catch::Contains(c.error));
  }
}

TEST_CASE("a query's size is bounded: nesting, comparisons, values") {
  std::string deep = std::string(40, '(') + R"(os.name = "x")" + std::string(40, ')');
  auto a = CompileQuery(deep);
  REQUIRE_FALSE(a.ok());
  CHECK_THAT(std::string(a.status().message()), Catch::Contains("nested too deeply"));

  std::string many = R"(os.name = "x")";
  for (int i = 0; i < 70; ++i) many += R"( or os.name = "x")";
  auto b = CompileQuery(many);
  REQUIRE_FALSE(b.ok());
  CHECK_THAT(std::string(b.status().message()), Catch::Contains("more than 64 comparisons"));

  std::string values = "memory.total_mb in (1)";
  for (int i = 0; i < 5; ++i) {
    values += " or memory.total_mb in (1";
    for (int k = 1; k < 250; ++k) values += ",1";
    values += ")";
  }
  REQUIRE(values.size() < 4096);
  auto d = CompileQuery(values);
  REQUIRE_FALSE(d.ok());
  CHECK_THAT(std::string(d.status().message()), Catch::Contains("more than 1024 values"));

  std::string list = "software.name in (";
  for (int i = 0; i < 300; ++i) list += (i ? ", \"p" : "\"p") + std::to_string(i) + "\"";
  auto c = CompileQuery(list + ")");
  REQUIRE_FALSE(c.ok());
  CHECK_THAT(std::string(c.status().message()), Catch::Contains("more than 256 values"));
}

TEST_CASE("the error position counts characters, not bytes") {
  auto q = CompileQuery("os.name = \"é\" and os.nmae = \"x\"");
  REQUIRE_FALSE(q.ok());
  CHECK_THAT(std::string(q.status().message()), Catch::Contains("character 22: unknown field"));
}
