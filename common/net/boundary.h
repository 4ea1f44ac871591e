#pragma once

// Boundaries (Configuration Manager's network locations): an IPv4/IPv6
// subnet ("10.1.0.0/16") or an address range ("10.1.0.10-10.1.0.200").
// Used by the MP's service location and checked by the provider.

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace strata {

// An address as 16 bytes (IPv4 mapped into ::ffff:0:0/96), ordered.
using IpAddress = std::array<unsigned char, 16>;

struct IpRange {
  IpAddress lo, hi;
  bool Contains(const IpAddress& a) const { return !(a < lo) && !(hi < a); }
  // hi - lo, comparable: the smaller, the more specific the boundary.
  IpAddress Width() const;
};

std::optional<IpAddress> ParseIpAddress(std::string_view text);
std::optional<IpRange> ParseBoundary(const std::string& value);

// InvalidArgument, saying what a boundary looks like, when `value` is
// neither a subnet nor a range.
absl::Status CheckBoundaryValue(const std::string& value);

}  // namespace strata
