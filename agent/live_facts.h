#pragma once

// What a live query reads on this machine, now (collections::LiveQuerySpec
// says which classes): the inventory classes from the collectors, and the
// live ones — running processes (/proc), listening sockets (/proc/net, each
// with the process holding it), logged-in users (utmp), systemd services
// (systemctl), the files the query names, and OS update status (apt-get's
// simulation, /var/run/reboot-required). Each class's rows are bounded;
// reading stops at the deadline.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/collectors.h"
#include "common/collections/query.h"

namespace strata::agent {

struct LiveContext {
  CollectorContext collectors;
  std::string site;      // device.site
  std::string work_dir;  // where the commands it runs write (systemctl, apt-get)
  absl::Time deadline = absl::InfiniteFuture();
  size_t max_rows_per_class = 20000;
};

// DeadlineExceeded when reading went past the deadline, ResourceExhausted
// when a class has more rows than allowed (the query is too costly here);
// another error names the class that could not be read.
absl::StatusOr<collections::DeviceFacts> LiveFacts(const collections::LiveQuerySpec& spec,
                                                   const LiveContext& ctx);

}  // namespace strata::agent
