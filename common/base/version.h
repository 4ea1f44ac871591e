#pragma once

namespace strata {

// The version every Strata binary reports (--version, site attach, logs).
inline constexpr char kVersion[] = "0.1.0";

}  // namespace strata
