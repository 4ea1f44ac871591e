#pragma once

// Configuration files: text-format protobuf messages (proto/strata/v1/config.proto).

#include <string>
#include <utility>
#include <vector>

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

// Command-line overrides of a config: sets each string field named by its
// dotted path ("database", "tls.ca_file") to its value, skipping empty values
// (a flag not given). InvalidArgument names a path that is not a string field
// of `message` (a programming error).
absl::Status OverrideStringFields(
    google::protobuf::Message* message,
    const std::vector<std::pair<absl::string_view, std::string>>& values);

// A site code is three characters, A-Z or 0-9 (Configuration Manager's rule).
absl::Status ValidateSiteCode(absl::string_view code);

}  // namespace strata
