#include "mp/locate.h"

#include <arpa/inet.h>

#include <array>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace strata::mp {
namespace {

// An address as 16 bytes (IPv4 mapped into ::ffff:0:0/96).
using Addr = std::array<unsigned char, 16>;

std::optional<Addr> ParseAddr(std::string_view text) {
  std::string s(text.substr(0, text.find('/')));
  Addr a{};
  in_addr v4;
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    a[10] = a[11] = 0xff;
    std::memcpy(a.data() + 12, &v4, 4);
    return a;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(a.data(), &v6, 16);
    return a;
  }
  return std::nullopt;
}

bool IsV4(const std::string& s) { return s.find(':') == std::string::npos; }

struct Range {
  Addr lo, hi;
};

std::optional<Range> ParseBoundary(const std::string& value) {
  if (size_t slash = value.find('/'); slash != std::string::npos) {
    auto base = ParseAddr(value.substr(0, slash));
    int bits = 0;
    if (!base || !absl::SimpleAtoi(value.substr(slash + 1), &bits)) return std::nullopt;
    int max = IsV4(value) ? 32 : 128;
    if (bits < 0 || bits > max) return std::nullopt;
    if (IsV4(value)) bits += 96;
    Range r{*base, *base};
    for (int i = bits; i < 128; ++i) {
      unsigned char mask = static_cast<unsigned char>(0x80 >> (i % 8));
      r.lo[i / 8] &= static_cast<unsigned char>(~mask);
      r.hi[i / 8] |= mask;
    }
    return r;
  }
  std::vector<std::string> parts = absl::StrSplit(value, '-');
  if (parts.size() != 2) return std::nullopt;
  auto lo = ParseAddr(parts[0]), hi = ParseAddr(parts[1]);
  if (!lo || !hi || IsV4(parts[0]) != IsV4(parts[1]) || *hi < *lo) return std::nullopt;
  return Range{*lo, *hi};
}

// Size of a range, compared lexicographically as hi - lo.
Addr Width(const Range& r) {
  Addr w{};
  int borrow = 0;
  for (int i = 15; i >= 0; --i) {
    int d = r.hi[i] - r.lo[i] - borrow;
    borrow = d < 0;
    w[i] = static_cast<unsigned char>(d + (borrow ? 256 : 0));
  }
  return w;
}

}  // namespace

absl::Status CheckBoundaryValue(const std::string& value) {
  if (!ParseBoundary(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("boundary \"", value,
                     "\": expected a subnet like 10.1.0.0/16 or a range like "
                     "10.1.0.10-10.1.0.200"));
  }
  return absl::OkStatus();
}

v1::ServiceLocation Locate(const v1::SiteBundle& bundle, const std::vector<std::string>& ips,
                           const std::string& own_address) {
  std::optional<Addr> best_width;
  std::string group;
  for (const auto& b : bundle.boundaries()) {
    auto range = ParseBoundary(b.value());
    if (!range) continue;
    for (const auto& ip : ips) {
      auto a = ParseAddr(ip);
      if (!a || *a < range->lo || range->hi < *a) continue;
      Addr w = Width(*range);
      if (!best_width || w < *best_width) {
        best_width = w;
        group = b.group();
      }
    }
  }
  v1::ServiceLocation out;
  std::string site = bundle.site_code();
  if (!group.empty()) {
    for (const auto& g : bundle.groups()) {
      if (g.name() == group) {
        site = g.assigned_site();
        out.set_boundary_group(group);
      }
    }
  }
  auto add_mps = [&](const std::string& code) {
    if (code == bundle.site_code() && !own_address.empty()) {
      out.add_management_points(own_address);
    }
    for (const auto& s : bundle.systems()) {
      if (s.site_code() != code || s.address() == own_address) continue;
      if (s.role() == "mp") out.add_management_points(s.address());
      if (s.role() == "dp") out.add_distribution_points(s.address());
    }
  };
  add_mps(site);
  if (out.management_points_size() == 0) {
    // A group assigned to a site whose MPs this site does not know: serve
    // the client here rather than send it nowhere.
    site = bundle.site_code();
    out.clear_boundary_group();
    add_mps(site);
  }
  out.set_assigned_site(site);
  return out;
}

}  // namespace strata::mp
