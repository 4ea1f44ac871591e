#pragma once

// The agent's configuration (strata.v1.AgentConfig): what it must name, and
// the defaults the agent fills in (dpkg and rpm, queue bound, fallback
// poll, hostname, /etc/machine-id, the enrollment token from its file).

#include "absl/status/status.h"
#include "strata/v1/config.pb.h"

namespace strata::agent {

// InvalidArgument naming what is missing: an MP, the root CA, the state folder.
absl::Status ValidateAgentConfig(const v1::AgentConfig& config);

v1::AgentConfig AgentConfigWithDefaults(v1::AgentConfig config);

}  // namespace strata::agent
