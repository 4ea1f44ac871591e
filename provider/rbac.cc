#include "provider/rbac.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/inventory/report_check.h"
#include "provider/input.h"

namespace strata::provider {

std::string VisibleByScope(const Caller& c, const std::string& a, store::Params& params) {
  if (c.all_scopes) return "true";
  params.emplace_back(store::TextArrayLiteral(c.scopes));
  return absl::StrCat(a, ".scopes && $", params.size(), "::text[]");
}

std::string VisibleDevice(const Caller& c, const std::string& d, store::Params& params) {
  params.emplace_back(store::TextArrayLiteral(c.collections));
  return absl::StrCat("EXISTS (SELECT 1 FROM collection_members vm WHERE vm.device_id = ", d,
                      ".id AND vm.collection = ANY($", params.size(), "::text[]))");
}

absl::Status RequireScopeVisible(const Caller& c, const std::string& what, const std::string& name,
                                 const google::protobuf::RepeatedPtrField<std::string>& scopes) {
  if (c.all_scopes) return absl::OkStatus();
  for (const auto& s : scopes) {
    if (c.HoldsScope(s)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      c.name, " may not see ", what, " \"", name, "\": it is in security scopes ",
      absl::StrJoin(scopes, ", "), ", and ", c.name, " holds ", absl::StrJoin(c.scopes, ", ")));
}

absl::Status CheckScopes(Transaction& tx, const Caller& c, const std::vector<std::string>& s) {
  if (s.size() > static_cast<size_t>(kMaxListItems)) {
    return absl::InvalidArgumentError("scopes: too many");
  }
  for (const auto& scope : s) {
    RETURN_IF_ERROR(CheckName("scopes", scope));
    if (!c.all_scopes && !c.HoldsScope(scope)) {
      return absl::PermissionDeniedError(
          absl::StrCat(c.name, " does not hold security scope \"", scope, "\""));
    }
  }
  return MustExist(tx, "security_scopes", "security scope", s);
}

absl::Status MustExist(Transaction& tx, const std::string& table, const std::string& what,
                       const std::vector<std::string>& names) {
  if (names.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(Result r, tx.Exec(absl::StrCat("SELECT n FROM unnest($1::text[]) AS n WHERE "
                                                  "NOT EXISTS (SELECT 1 FROM ",
                                                  table, " t WHERE t.name = n)"),
                                     {store::TextArrayLiteral(names)}));
  if (r.empty()) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("no ", what, " \"", r.GetString(0, 0), "\""));
}

absl::StatusOr<bool> Contained(Transaction& tx, const Caller& c, const std::string& name) {
  if (c.SeesAllDevices()) return true;
  std::string cur = name;
  for (int depth = 0; depth < 64 && !cur.empty(); ++depth) {
    if (c.HoldsCollection(cur)) return true;
    ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT coalesce(limiting, '') FROM collections WHERE "
                                       "name = $1",
                                       {cur}));
    if (r.empty()) return false;
    cur = r.GetString(0, 0);
  }
  return false;
}

absl::Status RequireContained(Transaction& tx, const Caller& c, const std::string& name) {
  ASSIGN_OR_RETURN(bool inside, Contained(tx, c, name));
  if (!inside) {
    return absl::PermissionDeniedError(
        absl::StrCat(c.name, " may only use collections within their own (",
                     absl::StrJoin(c.collections, ", "), "); \"", name, "\" is not"));
  }
  return absl::OkStatus();
}

absl::Status RequireEditable(Transaction& tx, const Caller& c, const std::string& name) {
  if (!c.SeesAllDevices() && c.HoldsCollection(name)) {
    return absl::PermissionDeniedError(
        absl::StrCat(c.name, " may not change collection \"", name,
                     "\": it is one of the collections that bound what ", c.name, " sees"));
  }
  return RequireContained(tx, c, name);
}

absl::StatusOr<std::string> Exceeding(Transaction& tx, const Caller& c,
                                      const std::vector<std::string>& roles) {
  if (c.permissions.count("*")) return std::string();
  ASSIGN_OR_RETURN(Result r, tx.Exec("SELECT DISTINCT unnest(permissions) FROM security_roles "
                                     "WHERE name = ANY($1::text[]) ORDER BY 1",
                                     {store::TextArrayLiteral(roles)}));
  for (size_t i = 0; i < r.size(); ++i) {
    if (!c.permissions.count(r.GetString(i, 0))) return r.GetString(i, 0);
  }
  return std::string();
}

absl::StatusOr<std::string> ResolveDevice(Transaction& tx, const Caller& c,
                                          const std::string& name) {
  if (name.empty() || name.size() > 255 || !inventory::IsCleanText(name)) {
    return absl::InvalidArgumentError("name: a device name or id");
  }
  store::Params params{name};
  std::string visible = VisibleDevice(c, "d", params);
  ASSIGN_OR_RETURN(Result r,
                   tx.Exec(absl::StrCat("SELECT d.id::text, ", visible,
                                        " AS visible FROM devices d WHERE d.id::text = $1 OR "
                                        "d.name = $1 ORDER BY visible DESC, d.id LIMIT 2"),
                           params));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no device \"", name, "\""));
  // Visible ones first: a name is ambiguous only among what the caller sees.
  if (r.size() > 1 && r.GetBool(1, 1)) {
    return absl::FailedPreconditionError(
        absl::StrCat("more than one device is named \"", name, "\": use its id"));
  }
  if (!r.GetBool(0, 1)) {
    return absl::PermissionDeniedError(absl::StrCat(c.name, " may not see device \"", name,
                                                    "\": it is in none of their collections (",
                                                    absl::StrJoin(c.collections, ", "), ")"));
  }
  return r.GetString(0, 0);
}

}  // namespace strata::provider
