#pragma once

// What an agent sends of its inventory: the first time (or when the site
// asks) the whole of it, afterwards a delta against what the site holds:
// software added or changed, software removed, and the hardware only when
// it changed (ignoring what changes by itself: uptime, boot time, free
// disk space). Pure functions, no I/O.

#include <cstdint>
#include <string>

#include "strata/v1/client.pb.h"

namespace strata::agent {

// Hardware as compared for deltas: a deterministic serialization without
// what changes by itself.
std::string HardwareFingerprint(v1::HardwareInventory hw);

// The inventory report numbered `seq` for `current`: full when `full` or
// there is no `base` (the inventory the site holds), else a delta against
// `base`, whose base_seq is base's inventory_seq.
v1::InventoryReport InventoryReportFor(const v1::InventoryReport* base,
                                       const v1::InventoryReport& current, bool full, int64_t seq);

}  // namespace strata::agent
