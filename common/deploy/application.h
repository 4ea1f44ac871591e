#pragma once

// Applications (strata/v1/deployment.proto): the checks every definition
// passes before it is stored, and the rules an agent applies to it. No
// database, no I/O: the provider and the agent share them.

#include <string>

#include "absl/status/status.h"
#include "strata/v1/deployment.pb.h"

namespace strata::deploy {

inline constexpr size_t kMaxCommandBytes = 8192;
inline constexpr size_t kMaxScriptBytes = 64 * 1024;
inline constexpr int kMaxDeploymentTypes = 16;
inline constexpr int kMaxDetectionRules = 32;
inline constexpr int kMaxDetectionDepth = 4;
inline constexpr int kMaxDependencyDepth = 5;
inline constexpr int kDefaultMaxRunMinutes = 120;
inline constexpr int kMaxRunMinutes = 1440;
inline constexpr size_t kMaxDetailBytes = 2048;  // of a state message's detail

// Everything of `app` but its name, scopes and the outputs (the provider
// checks those against the database): InvalidArgument naming the field,
// e.g. "deployment type \"deb\": requirements: query: character 4: ...".
absl::Status CheckApplication(const v1::Application& app);

// What `code` means for `dt`: its own return codes, then the defaults (0
// success, 3010 soft reboot, 1641 hard reboot, 1618 retry), else failure.
v1::ReturnKind ReturnKindOf(const v1::DeploymentType& dt, int code);

int MaxRunMinutes(const v1::DeploymentType& dt);

// "installed", "failed", ... (the state column of deployment_states).
std::string StateName(v1::DeploymentStateKind kind);

// A deployment type has detection rules (else: a plain program, run once).
bool HasDetection(const v1::DeploymentType& dt);

}  // namespace strata::deploy
