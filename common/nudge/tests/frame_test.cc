#include "common/nudge/frame.h"

#include <catch2/catch.hpp>

namespace {

using strata::nudge::DecodeFrame;
using strata::nudge::EncodeFrame;
using strata::nudge::kMaxFrameBytes;

std::string Encoded(const strata::v1::NudgeFrame& f) {
  std::string out;
  REQUIRE(EncodeFrame(f, &out).ok());
  return out;
}

const unsigned char* Bytes(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

TEST_CASE("a nudge frame round-trips, and an incomplete one asks for more") {
  strata::v1::NudgeFrame f;
  f.mutable_nudge()->set_kind(strata::v1::NOTIFICATION_KIND_POLICY_CHANGED);
  f.mutable_nudge()->set_detail("v42");
  f.mutable_nudge()->set_spread_ms(1500);
  const std::string wire = Encoded(f) + Encoded(f);
  strata::v1::NudgeFrame got;
  size_t used = 0;
  for (size_t cut = 0; cut < wire.size() / 2; ++cut) {
    REQUIRE(DecodeFrame(Bytes(wire), cut, &got, &used).ok());
    REQUIRE(used == 0);
  }
  REQUIRE(DecodeFrame(Bytes(wire), wire.size(), &got, &used).ok());
  CHECK(used == wire.size() / 2);
  CHECK(got.nudge().detail() == "v42");
  CHECK(got.nudge().spread_ms() == 1500);
}

TEST_CASE("a frame length of 0 or beyond the bound is refused before any parsing") {
  strata::v1::NudgeFrame got;
  size_t used = 0;
  const unsigned char zero[] = {0, 0, 1};
  CHECK(DecodeFrame(zero, sizeof(zero), &got, &used).code() == absl::StatusCode::kInvalidArgument);
  const unsigned char huge[] = {0xff, 0xff};  // 65,535 bytes announced, none sent
  CHECK(DecodeFrame(huge, sizeof(huge), &got, &used).code() == absl::StatusCode::kInvalidArgument);
  strata::v1::NudgeFrame big;
  big.mutable_goodbye()->set_reason(std::string(kMaxFrameBytes, 'x'));
  std::string out;
  CHECK(EncodeFrame(big, &out).code() == absl::StatusCode::kInvalidArgument);
  CHECK(out.empty());
}

TEST_CASE("bytes that are not a NudgeFrame are refused") {
  strata::v1::NudgeFrame got;
  size_t used = 0;
  const unsigned char garbage[] = {0, 3, 0xff, 0xff, 0xff};
  CHECK(DecodeFrame(garbage, sizeof(garbage), &got, &used).code() ==
        absl::StatusCode::kInvalidArgument);
  // A well-formed message with no body set is no frame either.
  const unsigned char empty_body[] = {0, 2, 0x78, 0x01};  // unknown field 15
  CHECK(DecodeFrame(empty_body, sizeof(empty_body), &got, &used).code() ==
        absl::StatusCode::kInvalidArgument);
}
