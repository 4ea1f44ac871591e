#include "common/net/boundary.h"

#include <arpa/inet.h>

#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace strata {
namespace {

bool IsV4(const std::string& s) { return s.find(':') == std::string::npos; }

}  // namespace

std::optional<IpAddress> ParseIpAddress(std::string_view text) {
  std::string s(text.substr(0, text.find('/')));
  IpAddress a{};
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

std::optional<IpRange> ParseBoundary(const std::string& value) {
  if (size_t slash = value.find('/'); slash != std::string::npos) {
    auto base = ParseIpAddress(value.substr(0, slash));
    int bits = 0;
    if (!base || !absl::SimpleAtoi(value.substr(slash + 1), &bits)) return std::nullopt;
    int max = IsV4(value) ? 32 : 128;
    if (bits < 0 || bits > max) return std::nullopt;
    if (IsV4(value)) bits += 96;
    IpRange r{*base, *base};
    for (int i = bits; i < 128; ++i) {
      unsigned char mask = static_cast<unsigned char>(0x80 >> (i % 8));
      r.lo[i / 8] &= static_cast<unsigned char>(~mask);
      r.hi[i / 8] |= mask;
    }
    return r;
  }
  std::vector<std::string> parts = absl::StrSplit(value, '-');
  if (parts.size() != 2) return std::nullopt;
  auto lo = ParseIpAddress(parts[0]), hi = ParseIpAddress(parts[1]);
  if (!lo || !hi || IsV4(parts[0]) != IsV4(parts[1]) || *hi < *lo) return std::nullopt;
  return IpRange{*lo, *hi};
}

IpAddress IpRange::Width() const {
  IpAddress w{};
  int borrow = 0;
  for (int i = 15; i >= 0; --i) {
    int d = hi[i] - lo[i] - borrow;
    borrow = d < 0;
    w[i] = static_cast<unsigned char>(d + (borrow ? 256 : 0));
  }
  return w;
}

absl::Status CheckBoundaryValue(const std::string& value) {
  if (!ParseBoundary(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("boundary \"", value,
                     "\": expected a subnet like 10.1.0.0/16 or a range like "
                     "10.1.0.10-10.1.0.200"));
  }
  return absl::OkStatus();
}

}  // namespace strata
