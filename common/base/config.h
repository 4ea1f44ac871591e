#pragma once

// Configuration files: text-format protobuf messages (proto/strata/v1/config.proto).

#include <string>

#include <string_view>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace strata {

// Parses the text-format file at `path` into `message`. Errors name the file,
// line and column: "config /etc/strata/p01.conf:3:7: Message type ... has no field named ...".
absl::Status LoadTextProtoFile(const std::string& path, google::protobuf::Message* message);
absl::Status ParseTextProto(absl::string_view text, absl::string_view source_name,
                            google::protobuf::Message* message);

// A site code is three characters, A-Z or 0-9 (Configuration Manager's rule).
absl::Status ValidateSiteCode(absl::string_view code);

}  // namespace strata
