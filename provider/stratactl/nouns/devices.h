#pragma once

// What other nouns show of devices (nouns/devices.cc).

#include "provider/stratactl/output.h"
#include "strata/v1/admin/devices.pb.h"

namespace strata::ctl {

Table DeviceTable(const v1::DeviceList& l);

}  // namespace strata::ctl
