#pragma once

// Scripts (strata/v1/script.proto, admin/scripts.proto): the checks a
// definition passes before it is stored, the values a run gives its
// parameters, and the names of run states. No database, no I/O: the
// provider checks with them, the agent names its states with them.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/v1/admin/scripts.pb.h"
#include "strata/v1/script.pb.h"

namespace strata::deploy {

inline constexpr size_t kMaxScriptBodyBytes = 256 * 1024;
inline constexpr int kMaxScriptParameters = 10;
inline constexpr int64_t kDefaultScriptTimeoutSeconds = 600;
inline constexpr int64_t kMaxScriptTimeoutSeconds = 86400;
inline constexpr size_t kMaxScriptOutputBytes = 64 * 1024;  // kept per device
inline constexpr int kDefaultMaxValueLength = 1024;
inline constexpr int kMaxValueLength = 4096;

// Fills the defaults (interpreter bash, timeout 600 s, parameter type
// string) and checks everything but the name and scopes: InvalidArgument
// naming the field, e.g. "parameters: \"Path\": a name is 1 to 64 of
// [a-z0-9_] starting with a letter".
absl::Status CheckScript(v1::Script& script);

// What scripts and runbooks share: the interpreter (default bash), the
// body, the user to run as ("root" made ""), the parameters' declarations.
absl::Status CheckCode(std::string* interpreter, const std::string& body, std::string* run_as,
                       google::protobuf::RepeatedPtrField<v1::ScriptParameter>* parameters);

// The value of every parameter of `params` for a run given `args` (by
// name; a missing one takes its default, or is refused when required): in
// the parameters' order. InvalidArgument naming the parameter and the rule
// a value breaks; an argument naming no parameter is refused.
absl::StatusOr<std::vector<v1::ScriptArgument>> ResolveArguments(
    const google::protobuf::RepeatedPtrField<v1::ScriptParameter>& params,
    const google::protobuf::RepeatedPtrField<v1::ScriptArgument>& args);

// The program that runs a body: "/bin/bash", "/bin/sh", "/usr/bin/python3".
std::string InterpreterPath(const std::string& interpreter);

// "running", "succeeded", "failed", "expired".
std::string ScriptStateName(v1::ScriptRunStateKind kind);

// The JSON stored in scripts.parameters and script_runs.arguments.
std::string ParametersJson(const google::protobuf::RepeatedPtrField<v1::ScriptParameter>& params);
absl::Status ParseParameters(const std::string& json,
                             google::protobuf::RepeatedPtrField<v1::ScriptParameter>* out);
std::string ArgumentsJson(const google::protobuf::RepeatedPtrField<v1::ScriptArgument>& args);
absl::Status ParseArguments(const std::string& json,
                            google::protobuf::RepeatedPtrField<v1::ScriptArgument>* out);

}  // namespace strata::deploy
