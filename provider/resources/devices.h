#pragma once

// What other resources use of devices (provider/resources/devices.cc).

#include <string>

#include "absl/status/status.h"
#include "provider/core.h"
#include "strata/v1/admin/devices.pb.h"

namespace strata::provider {

// One page of the devices the caller may see, filtered by `req.filter()` (a
// query): only `only_id` if given, only members of `member_of` if given.
absl::Status ListDeviceRows(Call& call, const v1::ListRequest& req, const std::string& only_id,
                            v1::DeviceList* out, const std::string& member_of = "");

// SQL: a device's approval state (approved, pending, blocked) from the
// device at alias `d` and the hierarchy's decisions about it.
std::string ApprovalState(const std::string& d);

}  // namespace strata::provider
