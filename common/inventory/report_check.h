#pragma once

// Validation of client data before it is spooled (at the MP) and before it
// is applied (at the site): every size a client controls is bounded, every
// string is valid UTF-8 without NUL, no negative sizes, no duplicate keys.
// Errors are InvalidArgument and name the offending field.

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "strata/v1/client.pb.h"

namespace strata::inventory {

struct Limits {
  int max_software = 100000;
  int max_hardware_items = 1024;  // processors, disks, adapters each
  int max_addresses = 256;
  size_t max_string = 1024;
  size_t max_state_text = 4096;
};

absl::Status CheckReport(const v1::ClientReport& report, const Limits& limits = {});

// True if `s` is valid UTF-8 and has no NUL byte (PostgreSQL text cannot hold one).
bool IsCleanText(std::string_view s);
// `s` with every byte that is not part of valid UTF-8 (and every NUL)
// replaced by '?': what a program printed, made fit to report.
std::string CleanText(std::string_view s);

// A UUID in canonical text form (8-4-4-4-12 hex digits).
bool IsUuid(std::string_view s);

}  // namespace strata::inventory
