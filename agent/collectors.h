#pragma once

// Inventory collectors, the osquery way: each is one spec (name, what it
// collects) and one function that fills its part of the inventory from the
// real machine. They read files (/proc, /sys, /etc/os-release, the dpkg
// database) under a root directory, so tests can point them elsewhere.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "strata/v1/client.pb.h"

namespace strata::agent {

struct CollectorContext {
  std::string root = "/";  // prefix for /proc, /sys, /etc
  std::string dpkg_dir = "/var/lib/dpkg";
  std::string rpm_command = "rpm";  // "none": skip rpm
  std::string hostname;             // "" = uname
};

struct Collector {
  const char* name;
  const char* description;
  std::function<absl::Status(const CollectorContext&, v1::InventoryReport*)> collect;
};

// All registered collectors, in a fixed order.
const std::vector<Collector>& Collectors();

// Runs every collector; a failing collector leaves its part empty and its
// error in `errors` (the rest still reports).
v1::InventoryReport CollectInventory(const CollectorContext& ctx, std::vector<std::string>* errors);

// The machine's addresses but loopback's (for boundaries), without prefix.
std::vector<std::string> LocalAddresses();

// A field of /proc/mounts as it names a path: the kernel writes space, tab,
// newline and backslash as \040, \011, \012 and \134.
std::string UnescapeMountField(std::string_view field);

// The network adapter an address of getifaddrs() belongs to: an IPv4
// address on a labelled alias ("ip addr add ... label eth0:x") is listed
// under the label, and belongs to eth0.
std::string AdapterOfInterface(std::string_view ifa_name);

}  // namespace strata::agent
