#include "common/nudge/frame.h"

#include "absl/strings/str_cat.h"

namespace strata::nudge {

absl::Status EncodeFrame(const v1::NudgeFrame& frame, std::string* out) {
  const size_t size = frame.ByteSizeLong();
  if (size == 0 || size > kMaxFrameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a nudge frame of ", size, " bytes; 1 to ", kMaxFrameBytes, " allowed"));
  }
  out->push_back(static_cast<char>(size >> 8));
  out->push_back(static_cast<char>(size & 0xff));
  const size_t at = out->size();
  out->resize(at + size);
  frame.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(&(*out)[at]));
  return absl::OkStatus();
}

absl::Status DecodeFrame(const unsigned char* data, size_t size, v1::NudgeFrame* out,
                         size_t* consumed) {
  *consumed = 0;
  if (size < 2) return absl::OkStatus();
  const size_t length = (size_t{data[0]} << 8) | data[1];
  if (length == 0 || length > kMaxFrameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a nudge frame of ", length, " bytes; 1 to ", kMaxFrameBytes, " allowed"));
  }
  if (size < 2 + length) return absl::OkStatus();
  if (!out->ParseFromArray(data + 2, static_cast<int>(length)) ||
      out->body_case() == v1::NudgeFrame::BODY_NOT_SET) {
    return absl::InvalidArgumentError("a nudge frame that is not a NudgeFrame");
  }
  *consumed = 2 + length;
  return absl::OkStatus();
}

}  // namespace strata::nudge
