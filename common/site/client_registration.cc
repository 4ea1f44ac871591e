#include "common/site/client_registration.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/collections/client_settings.h"
#include "common/inventory/report_check.h"
#include "common/net/pki.h"

namespace strata::site {
namespace {

bool IsHardwareId(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// The token's record, locked until the registration commits (so that two
// registrations cannot both take its last use). Returns its uses.
struct Token {
  std::string sha256;
  int64_t max_uses = 0;
  int64_t uses = 0;
};

absl::StatusOr<Token> CheckToken(store::Transaction& tx, const std::string& token) {
  Token t;
  t.sha256 = Sha256Hex(token);
  ASSIGN_OR_RETURN(store::Result r,
                   tx.Exec("SELECT revoked_at IS NOT NULL, coalesce(expires_at <= now(), false), "
                           "max_uses FROM enrollment_tokens WHERE token_sha256 = $1 FOR UPDATE",
                           {t.sha256}));
  if (r.empty() || r.GetBool(0, 1)) {
    return absl::PermissionDeniedError("the enrollment token is not recognized or has expired");
  }
  if (r.GetBool(0, 0)) {
    return absl::PermissionDeniedError("the enrollment token was revoked by an administrator");
  }
  t.max_uses = r.GetInt(0, 2);
  // Counted in a statement of its own, after the lock: its snapshot sees the
  // uses of registrations that held the lock before this one (a count in
  // the locking statement would see only those committed before it began).
  ASSIGN_OR_RETURN(store::Result uses, tx.Exec("SELECT count(*) FROM enrollment_token_uses WHERE "
                                               "token_sha256 = $1",
                                               {t.sha256}));
  t.uses = uses.GetInt(0, 0);
  return t;
}

}  // namespace

absl::Status CheckRegisterRequest(const v1::RegisterRequest& req) {
  if (!IsHardwareId(req.hardware_id())) {
    return absl::InvalidArgumentError(
        "hardware_id: 1-128 characters of letters, digits, '-', '_' or '.'");
  }
  if (req.hostname().empty() || req.hostname().size() > 255 ||
      !inventory::IsCleanText(req.hostname())) {
    return absl::InvalidArgumentError("hostname: 1-255 bytes of UTF-8 text");
  }
  if (req.enrollment_token().size() > 256) {
    return absl::InvalidArgumentError("enrollment_token: longer than 256 bytes");
  }
  return absl::OkStatus();
}

absl::StatusOr<Registered> RegisterDevice(store::Transaction& tx, const std::string& site,
                                          const std::string& owner,
                                          const v1::RegisterRequest& req) {
  ASSIGN_OR_RETURN(std::string mode, collections::ApprovalMode(tx));
  std::optional<Token> token;
  if (!req.enrollment_token().empty()) {
    ASSIGN_OR_RETURN(token, CheckToken(tx, req.enrollment_token()));
  } else if (mode == "token") {
    return absl::UnauthenticatedError(
        "an enrollment token is required to register with this site (approval mode "
        "token, in the Default Client Settings)");
  }
  Registered out;
  out.approved = token.has_value() || mode == "auto";
  ASSIGN_OR_RETURN(store::Result known,
                   tx.Exec("SELECT id::text, strata_client_state(id, approved, revoked) FROM "
                           "devices WHERE hardware_id = $1 ORDER BY discovered_at LIMIT 1 FOR "
                           "UPDATE",
                           {req.hardware_id()}));
  if (!known.empty()) {
    const std::string state = known.GetString(0, 1);
    if (state == "blocked") {
      return absl::PermissionDeniedError(
          "this machine is blocked by an administrator (its registration was revoked)");
    }
    out.id = known.GetString(0, 0);
    out.approved = out.approved || state == "approved";
  }
  if (token) {
    // A machine registering again with the token it used takes no new use.
    bool used_before = false;
    if (!out.id.empty()) {
      ASSIGN_OR_RETURN(store::Result u,
                       tx.Exec("SELECT 1 FROM enrollment_token_uses WHERE token_sha256 = $1 AND "
                               "device_id = $2::uuid",
                               {token->sha256, out.id}));
      used_before = !u.empty();
    }
    if (!used_before && token->max_uses > 0 && token->uses >= token->max_uses) {
      return absl::PermissionDeniedError(
          absl::StrCat("the enrollment token has been used ", token->uses, " times, its limit"));
    }
  }
  if (!out.id.empty()) {
    RETURN_IF_ERROR(tx.Exec("UPDATE devices SET approved = $2, name = $3 WHERE id = $1 AND "
                            "(approved, name) IS DISTINCT FROM ($2, $3)",
                            {out.id, out.approved ? "t" : "f", req.hostname()})
                        .status());
  } else {
    ASSIGN_OR_RETURN(
        store::Result inserted,
        tx.Exec("INSERT INTO devices (id, name, site_code, hardware_id, registered_via, "
                "approved, last_seen_at) VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, now()) "
                "RETURNING id::text",
                {req.hostname(), owner, req.hardware_id(), site, out.approved ? "t" : "f"}));
    out.id = inserted.GetString(0, 0);
  }
  if (token) {
    RETURN_IF_ERROR(tx.Exec("INSERT INTO enrollment_token_uses (token_sha256, device_id, "
                            "site_code) VALUES ($1, $2::uuid, $3) ON CONFLICT DO NOTHING",
                            {token->sha256, out.id, site})
                        .status());
  }
  return out;
}

}  // namespace strata::site
