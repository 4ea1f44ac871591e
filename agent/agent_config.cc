#include "agent/agent_config.h"

#include <sys/utsname.h>

#include "absl/strings/strip.h"
#include "common/base/files.h"

namespace strata::agent {

absl::Status ValidateAgentConfig(const v1::AgentConfig& c) {
  if (c.management_points().empty()) {
    return absl::InvalidArgumentError("management_points: at least one MP address is required");
  }
  if (c.ca_file().empty()) return absl::InvalidArgumentError("ca_file: the root CA is required");
  if (c.state_dir().empty()) return absl::InvalidArgumentError("state_dir: required");
  return absl::OkStatus();
}

v1::AgentConfig AgentConfigWithDefaults(v1::AgentConfig config) {
  if (config.dpkg_dir().empty()) config.set_dpkg_dir("/var/lib/dpkg");
  if (config.rpm_command().empty()) config.set_rpm_command("rpm");
  if (config.max_queue_reports() <= 0) config.set_max_queue_reports(10000);
  if (config.fallback_poll_seconds() <= 0) config.set_fallback_poll_seconds(300);
  if (config.hostname().empty()) {
    utsname u;
    if (uname(&u) == 0) config.set_hostname(u.nodename);
  }
  if (config.hardware_id().empty()) {
    config.set_hardware_id(
        std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty("/etc/machine-id"))));
  }
  if (config.enrollment_token().empty() && !config.enrollment_token_file().empty()) {
    config.set_enrollment_token(
        std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty(config.enrollment_token_file()))));
  }
  return config;
}

}  // namespace strata::agent
