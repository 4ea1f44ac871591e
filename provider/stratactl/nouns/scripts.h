#pragma once

// What other nouns share with scripts (nouns/scripts.cc): runbooks declare
// their parameters the same way.

#include <string>

#include "strata/v1/script.pb.h"

namespace strata::ctl {

// The whole of a file; false if it cannot be read.
bool ReadWhole(const std::string& path, std::string* out);

// A parameter from "name[:type][:required][:default=V][:min=N][:max=N]
// [:min-length=N][:max-length=N][:allowed=a|b][:regex=RE]" (regex= takes
// the rest): "" or what is wrong.
std::string ParseParam(const std::string& spec, v1::ScriptParameter* p);

// "int, required, 1..10": a parameter's rules, for describe.
std::string ParameterRules(const v1::ScriptParameter& p);

}  // namespace strata::ctl
