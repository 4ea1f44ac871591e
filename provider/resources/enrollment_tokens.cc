// Enrollment tokens (proto/strata/v1/admin/enrollment_tokens.proto): made
// here, shown once, stored as their SHA-256; registration checks them
// (common/site/client_service.cc).

#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/status.h"
#include "common/net/pki.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/resource.h"
#include "strata/v1/admin/enrollment_tokens.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"token.read", "List enrollment tokens (never the tokens themselves)"};
constexpr Permission kCreate{"token.create", "Make enrollment tokens"};
constexpr Permission kRevoke{"token.revoke", "Revoke enrollment tokens"};

constexpr int64_t kMaxValidSeconds = 10LL * 366 * 86400;
constexpr int32_t kMaxUses = 1000000;

// The row's name as listed: its name, or for a token made without one
// (before tokens had names) "sha256:" and the start of its hash.
constexpr char kShownName[] = "coalesce(t.name, 'sha256:' || left(t.token_sha256, 12))";

// Columns as FillToken reads them, then the hash.
std::string TokenSelect() {
  return absl::StrCat(
      "SELECT ", kShownName, ", t.description, ", Ts("t.created_at"), ", t.created_by, ",
      Ts("t.expires_at"),
      ", t.max_uses, u.uses, CASE WHEN t.revoked_at IS NOT NULL THEN 'revoked' WHEN "
      "t.expires_at <= now() THEN 'expired' WHEN t.max_uses > 0 AND u.uses >= t.max_uses THEN "
      "'used up' ELSE 'valid' END, t.token_sha256 FROM enrollment_tokens t CROSS JOIN LATERAL "
      "(SELECT count(*) "
      "AS uses FROM enrollment_token_uses x WHERE x.token_sha256 = t.token_sha256) u");
}

void FillToken(const Result& r, size_t i, v1::EnrollmentToken* t) {
  t->set_name(r.GetString(i, 0));
  t->set_description(r.GetString(i, 1));
  t->set_created_at(r.GetString(i, 2));
  t->set_created_by(r.GetString(i, 3));
  t->set_expires_at(r.GetString(i, 4));
  t->set_max_uses(static_cast<int32_t>(r.GetInt(i, 5)));
  t->set_uses(r.GetInt(i, 6));
  t->set_state(r.GetString(i, 7));
  t->set_sha256_prefix(r.GetString(i, 8).substr(0, 12));
}

// By name, or "sha256:<at least 8 hex digits>".
absl::Status ReadToken(Transaction& tx, const std::string& name, v1::EnrollmentToken* out,
                       std::string* sha256 = nullptr) {
  std::string where = "t.name = $1";
  std::string key = name;
  if (absl::StartsWith(name, "sha256:")) {
    key = absl::AsciiStrToLower(name.substr(7));
    if (key.size() < 8 || key.size() > 64 || !std::all_of(key.begin(), key.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c));
        })) {
      return absl::InvalidArgumentError(
          "name: a token's name, or sha256: and at least 8 hex digits of its hash");
    }
    where = "t.token_sha256 LIKE $1 || '%'";
  }
  ASSIGN_OR_RETURN(Result r,
                   tx.Exec(absl::StrCat(TokenSelect(), " WHERE ", where, " LIMIT 2"), {key}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no enrollment token \"", name, "\""));
  if (r.size() > 1) {
    // Names are unique per site, not across the hierarchy (two sites may
    // make one name at once): then the hash tells them apart.
    return absl::FailedPreconditionError(
        key == name
            ? absl::StrCat("more than one token is named \"", name,
                           "\" (made at two sites at once): name it by sha256: and its "
                           "sha256_prefix (get enrollment-tokens -o json)")
            : absl::StrCat("more than one token's hash starts with ", key, ": give more digits"));
  }
  out->Clear();
  FillToken(r, 0, out);
  if (sha256 != nullptr) *sha256 = r.GetString(0, 8);
  return absl::OkStatus();
}

class EnrollmentTokenServiceImpl final : public v1::EnrollmentTokenService::Service {
 public:
  explicit EnrollmentTokenServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListEnrollmentTokens(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                    v1::EnrollmentTokenList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = TokenSelect();
      spec.filter_columns = {kShownName, "t.description"};
      spec.order = {{"name", kShownName}, {"created", "t.created_at"}, {"expires", "t.expires_at"}};
      spec.default_order = "t.created_at DESC NULLS LAST, t.token_sha256";
      return ListPage(call.tx, *req, spec, {}, out,
                      [&](const Result& r, size_t i) { FillToken(r, i, out->add_tokens()); });
    });
  }

  grpc::Status CreateEnrollmentToken(grpc::ServerContext* ctx,
                                     const v1::CreateEnrollmentTokenRequest* req,
                                     v1::EnrollmentToken* out) override {
    return core_.Run(*ctx, __func__, kCreate.name, [&](Call& call) -> absl::Status {
      static const std::regex kName("[A-Za-z0-9._-]{1,64}");
      if (!std::regex_match(req->name(), kName)) {
        return absl::InvalidArgumentError(
            "name: 1-64 characters of letters, digits, '.', '_' or '-'");
      }
      RETURN_IF_ERROR(CheckText("description", req->description()));
      if (req->valid_seconds() < 0 || req->valid_seconds() > kMaxValidSeconds) {
        return absl::InvalidArgumentError(
            absl::StrCat("valid_seconds: 0 (no expiry) to ", kMaxValidSeconds, " (10 years)"));
      }
      if (req->max_uses() < 0 || req->max_uses() > kMaxUses) {
        return absl::InvalidArgumentError(absl::StrCat("max_uses: 0 (unlimited) to ", kMaxUses));
      }
      ASSIGN_OR_RETURN(
          Result exists,
          call.tx.Exec("SELECT 1 FROM enrollment_tokens WHERE name = $1", {req->name()}));
      if (!exists.empty()) {
        return absl::AlreadyExistsError(
            absl::StrCat("enrollment token \"", req->name(), "\" already exists"));
      }
      // 24 random bytes: 192 bits, as 32 characters a shell does not mangle.
      unsigned char bytes[24];
      if (RAND_bytes(bytes, sizeof bytes) != 1) {
        return absl::InternalError("no random bytes from OpenSSL for a token");
      }
      const std::string token = absl::WebSafeBase64Escape(
          std::string(reinterpret_cast<const char*>(bytes), sizeof bytes));
      RETURN_IF_ERROR(
          call.tx
              .Exec("INSERT INTO enrollment_tokens (token_sha256, name, description, expires_at, "
                    "created_by, max_uses) VALUES ($1, $2, $3, CASE WHEN $4::bigint > 0 THEN "
                    "now() + make_interval(secs => $4::bigint) END, $5, $6)",
                    {Sha256Hex(token), req->name(), req->description(),
                     absl::StrCat(req->valid_seconds()), call.caller.name,
                     absl::StrCat(req->max_uses())})
              .status());
      RETURN_IF_ERROR(call.Audit(
          "create", "enrollment token", req->name(),
          absl::StrCat("valid_seconds=", req->valid_seconds(), " max_uses=", req->max_uses())));
      RETURN_IF_ERROR(ReadToken(call.tx, req->name(), out));
      out->set_token(token);
      return absl::OkStatus();
    });
  }

  grpc::Status RevokeEnrollmentToken(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                     v1::EnrollmentToken* out) override {
    return core_.Run(*ctx, __func__, kRevoke.name, [&](Call& call) -> absl::Status {
      std::string sha256;
      v1::EnrollmentToken before;
      RETURN_IF_ERROR(ReadToken(call.tx, req->name(), &before, &sha256));
      if (before.state() == "revoked") {
        return absl::FailedPreconditionError(
            absl::StrCat("enrollment token \"", req->name(), "\" is already revoked"));
      }
      RETURN_IF_ERROR(call.tx
                          .Exec("UPDATE enrollment_tokens SET revoked_at = now() WHERE "
                                "token_sha256 = $1",
                                {sha256})
                          .status());
      RETURN_IF_ERROR(call.Audit(
          "revoke", "enrollment token", before.name(),
          absl::StrCat("was ", before.state(), ", used ", before.uses(), " times here")));
      return ReadToken(call.tx, req->name(), out);
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource EnrollmentTokensResource() {
  return {"enrollment tokens", {kRead, kCreate, kRevoke}, [](const ResourceContext& c) {
            return std::make_unique<EnrollmentTokenServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
