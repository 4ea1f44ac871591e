#include "common/deploy/script.h"

#include <google/protobuf/util/json_util.h>
#include <re2/re2.h>

#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/inventory/report_check.h"

namespace strata::deploy {
namespace {

absl::Status Bad(const std::string& what, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", why));
}

bool IsParameterName(const std::string& s) {
  if (s.empty() || s.size() > 64 || s[0] < 'a' || s[0] > 'z') return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

// Whether `value` is one `p` takes: "" if so, else why not.
std::string Refusal(const v1::ScriptParameter& p, const std::string& value) {
  if (!inventory::IsCleanText(value) || value.find('\n') != std::string::npos)
    return "not one line of text";
  if (p.type() == "int") {
    int64_t n = 0;
    if (!absl::SimpleAtoi(value, &n)) return absl::StrCat("\"", value, "\" is not an integer");
    if ((p.min() != 0 || p.max() != 0) && (n < p.min() || n > p.max()))
      return absl::StrCat(n, " is not in ", p.min(), "..", p.max());
    return "";
  }
  if (p.type() == "enum") {
    for (const auto& a : p.allowed())
      if (a == value) return "";
    return absl::StrCat("\"", value, "\" is not one of ", absl::StrJoin(p.allowed(), ", "));
  }
  const int max = p.max_length() > 0 ? p.max_length() : kDefaultMaxValueLength;
  if (static_cast<int>(value.size()) < p.min_length() || static_cast<int>(value.size()) > max)
    return absl::StrCat("its length ", value.size(), " is not in ", p.min_length(), "..", max);
  if (!p.regex().empty()) {
    RE2 re(p.regex(), RE2::Quiet);
    if (!RE2::FullMatch(value, re))
      return absl::StrCat("\"", value, "\" does not match ", p.regex());
  }
  return "";
}

absl::Status CheckParameter(v1::ScriptParameter& p) {
  const std::string what = absl::StrCat("parameters: \"", p.name(), "\"");
  if (!IsParameterName(p.name()))
    return Bad(what, "a name is 1 to 64 of [a-z0-9_] starting with a letter");
  if (p.type().empty()) p.set_type("string");
  if (p.type() != "string" && p.type() != "int" && p.type() != "enum")
    return Bad(what, absl::StrCat("type \"", p.type(), "\": string, int or enum"));
  if (p.description().size() > 1024 || !inventory::IsCleanText(p.description()))
    return Bad(what, "the description is at most 1 KiB of text");
  if (p.type() != "string" && (!p.regex().empty() || p.min_length() != 0 || p.max_length() != 0))
    return Bad(what, "regex and lengths are for string parameters");
  if (p.type() != "int" && (p.min() != 0 || p.max() != 0))
    return Bad(what, "min and max are for int parameters");
  if (p.type() != "enum" && p.allowed_size() > 0)
    return Bad(what, "allowed values are for enum parameters");
  if (p.type() == "string") {
    if (p.min_length() < 0 || p.max_length() < 0 || p.max_length() > kMaxValueLength ||
        (p.max_length() > 0 && p.min_length() > p.max_length()))
      return Bad(what, absl::StrCat("lengths: 0 <= min_length <= max_length <= ", kMaxValueLength));
    if (p.regex().size() > 1024) return Bad(what, "the regex is at most 1 KiB");
    if (!p.regex().empty()) {
      RE2 re(p.regex(), RE2::Quiet);
      if (!re.ok()) return Bad(what, absl::StrCat("regex: ", re.error()));
    }
  }
  if (p.type() == "int" && p.min() > p.max()) return Bad(what, "min is above max");
  if (p.type() == "enum") {
    if (p.allowed_size() < 1 || p.allowed_size() > 64)
      return Bad(what, "an enum allows 1 to 64 values");
    std::set<std::string> seen;
    for (const auto& a : p.allowed()) {
      if (a.empty() || a.size() > 256 || !inventory::IsCleanText(a))
        return Bad(what, "an allowed value is 1 to 256 characters of text");
      if (!seen.insert(a).second) return Bad(what, absl::StrCat("\"", a, "\" is allowed twice"));
    }
  }
  if (!p.default_value().empty()) {
    const std::string why = Refusal(p, p.default_value());
    if (!why.empty()) return Bad(what, absl::StrCat("default: ", why));
  }
  return absl::OkStatus();
}

template <typename List, typename Field>
std::string ToJson(const Field& items, Field* (List::*mutable_list)()) {
  List list;
  *(list.*mutable_list)() = items;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(list, &json);
  return json;
}

template <typename List, typename Field>
absl::Status FromJson(const std::string& json, Field* out, Field* (List::*mutable_list)(),
                      const char* what) {
  List list;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;  // written by a newer provider
  auto s = google::protobuf::util::JsonStringToMessage(json, &list, opts);
  if (!s.ok()) return absl::DataLossError(absl::StrCat(what, ": ", s.ToString()));
  *out = std::move(*(list.*mutable_list)());
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckCode(std::string* interpreter, const std::string& body, std::string* run_as,
                       google::protobuf::RepeatedPtrField<v1::ScriptParameter>* parameters) {
  if (interpreter->empty()) *interpreter = "bash";
  if (InterpreterPath(*interpreter).empty())
    return Bad("interpreter", absl::StrCat("\"", *interpreter, "\": bash, sh or python3"));
  if (body.empty() || body.size() > kMaxScriptBodyBytes)
    return Bad("body",
               absl::StrCat(body.size(), " bytes: 1 byte to ", kMaxScriptBodyBytes / 1024, " KiB"));
  if (!inventory::IsCleanText(body))
    return Bad("body", "not text (it holds a NUL or bytes that are not UTF-8)");
  if (*run_as == "root") run_as->clear();
  if (!run_as->empty()) {
    const std::string& u = *run_as;
    bool ok = u.size() <= 32 && u[0] != '-';
    for (char c : u)
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.');
    if (!ok) return Bad("run_as", absl::StrCat("\"", u, "\" is not a user name"));
  }
  if (parameters->size() > kMaxScriptParameters)
    return Bad("parameters", absl::StrCat(parameters->size(), ": at most ", kMaxScriptParameters));
  std::set<std::string> names;
  for (auto& p : *parameters) {
    if (auto st = CheckParameter(p); !st.ok()) return st;
    if (!names.insert(p.name()).second)
      return Bad("parameters", absl::StrCat("\"", p.name(), "\" is declared twice"));
  }
  return absl::OkStatus();
}

absl::Status CheckScript(v1::Script& s) {
  if (auto st =
          CheckCode(s.mutable_interpreter(), s.body(), s.mutable_run_as(), s.mutable_parameters());
      !st.ok())
    return st;
  if (s.description().size() > 4096 || !inventory::IsCleanText(s.description()))
    return Bad("description", "at most 4 KiB of text");
  if (s.timeout_seconds() == 0) s.set_timeout_seconds(kDefaultScriptTimeoutSeconds);
  if (s.timeout_seconds() < 1 || s.timeout_seconds() > kMaxScriptTimeoutSeconds)
    return Bad("timeout_seconds",
               absl::StrCat(s.timeout_seconds(), ": 1 to ", kMaxScriptTimeoutSeconds, " (24 h)"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::ScriptArgument>> ResolveArguments(
    const google::protobuf::RepeatedPtrField<v1::ScriptParameter>& params,
    const google::protobuf::RepeatedPtrField<v1::ScriptArgument>& args) {
  std::map<std::string, std::string> given;
  for (const auto& a : args) {
    bool known = false;
    for (const auto& p : params) known = known || p.name() == a.name();
    if (!known)
      return Bad(absl::StrCat("parameter \"", a.name(), "\""), "the script has no such parameter");
    if (!given.emplace(a.name(), a.value()).second)
      return Bad(absl::StrCat("parameter \"", a.name(), "\""), "given twice");
  }
  std::vector<v1::ScriptArgument> out;
  for (const auto& p : params) {
    auto it = given.find(p.name());
    std::string value = it != given.end() ? it->second : p.default_value();
    if (it == given.end() && value.empty() && p.required())
      return Bad(absl::StrCat("parameter \"", p.name(), "\""), "required");
    if (it != given.end() || !value.empty()) {
      const std::string why = Refusal(p, value);
      if (!why.empty()) return Bad(absl::StrCat("parameter \"", p.name(), "\""), why);
    }
    v1::ScriptArgument a;
    a.set_name(p.name());
    a.set_value(std::move(value));
    out.push_back(std::move(a));
  }
  return out;
}

std::string InterpreterPath(const std::string& interpreter) {
  if (interpreter == "bash") return "/bin/bash";
  if (interpreter == "sh") return "/bin/sh";
  if (interpreter == "python3") return "/usr/bin/python3";
  return "";
}

std::string ScriptStateName(v1::ScriptRunStateKind kind) {
  switch (kind) {
    case v1::SCRIPT_RUN_STATE_RUNNING:
      return "running";
    case v1::SCRIPT_RUN_STATE_SUCCEEDED:
      return "succeeded";
    case v1::SCRIPT_RUN_STATE_FAILED:
      return "failed";
    case v1::SCRIPT_RUN_STATE_EXPIRED:
      return "expired";
    default:
      return "unknown";
  }
}

std::string ParametersJson(const google::protobuf::RepeatedPtrField<v1::ScriptParameter>& params) {
  return ToJson(params, &v1::ScriptParameterList::mutable_parameters);
}

absl::Status ParseParameters(const std::string& json,
                             google::protobuf::RepeatedPtrField<v1::ScriptParameter>* out) {
  return FromJson(json, out, &v1::ScriptParameterList::mutable_parameters, "script parameters");
}

std::string ArgumentsJson(const google::protobuf::RepeatedPtrField<v1::ScriptArgument>& args) {
  return ToJson(args, &v1::ScriptArgumentList::mutable_arguments);
}

absl::Status ParseArguments(const std::string& json,
                            google::protobuf::RepeatedPtrField<v1::ScriptArgument>* out) {
  return FromJson(json, out, &v1::ScriptArgumentList::mutable_arguments, "script arguments");
}

}  // namespace strata::deploy
