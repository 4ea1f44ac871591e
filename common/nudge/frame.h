#pragma once

// Frames of the nudge channel (proto/strata/v1/client.proto, NudgeFrame):
// a 2-byte big-endian length, 1..kMaxFrameBytes, then that many bytes of a
// serialized NudgeFrame. Both ends bound what they read by the length
// before parsing anything.

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "strata/v1/client.pb.h"

namespace strata::nudge {

inline constexpr size_t kMaxFrameBytes = 4096;

// The bytes of `frame` on the wire; InvalidArgument if it is too large.
absl::Status EncodeFrame(const v1::NudgeFrame& frame, std::string* out);

// Decodes the frame at the start of `data`. Returns OK with *consumed = 0
// while the frame is incomplete; OK with *consumed > 0 and `out` set for a
// whole one; InvalidArgument for a length out of bounds or bytes that are
// not a NudgeFrame (the connection is then closed).
absl::Status DecodeFrame(const unsigned char* data, size_t size, v1::NudgeFrame* out,
                         size_t* consumed);

}  // namespace strata::nudge
