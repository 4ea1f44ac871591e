// Hierarchy settings (proto/strata/v1/admin/hierarchy_settings.proto):
// rows of global_settings, each a known setting with a type and a default
// (an unknown name is refused: a typo must not pass for a setting).

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/resource.h"
#include "strata/v1/admin/hierarchy_settings.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kUpdate{"hierarchy.update", "Change hierarchy settings"};
constexpr char kRead[] = "site.read";  // resources/sites.cc

struct Known {
  const char* name;
  const char* type;  // "bool" or "seconds"
  const char* default_value;
  const char* description;
  bool per_site;  // may be set for one site: "P01/<name>"
};
constexpr Known kKnown[] = {
    {"script.allow_self_approval", "bool", "false",
     "An administrator may approve a script they wrote", false},
    {"client.inactive_after_seconds", "seconds", "1209600",
     "A client not heard from this long is marked inactive (14 days)", true},
    {"client.delete_after_seconds", "seconds", "7776000",
     "A client not heard from this long is deleted (90 days)", true},
    {"runbook.job_retention_seconds", "seconds", "2592000",
     "Runbook jobs are kept this long, then deleted with their output (30 days)", false},
};

// The known setting `name` names ("SITE/name" for a per-site one).
absl::StatusOr<const Known*> Find(const std::string& name) {
  const size_t slash = name.find('/');
  const std::string base = slash == std::string::npos ? name : name.substr(slash + 1);
  std::vector<std::string> names;
  for (const Known& k : kKnown) {
    names.push_back(k.name);
    if (base != k.name) continue;
    if (slash != std::string::npos) {
      const std::string site = name.substr(0, slash);
      bool code = site.size() == 3;
      for (char c : site) code = code && (absl::ascii_isupper(c) || absl::ascii_isdigit(c));
      if (!k.per_site || !code)
        return absl::InvalidArgumentError(
            absl::StrCat("\"", name, "\": ",
                         k.per_site ? "a site code is 3 of A-Z and 0-9"
                                    : "this setting is the hierarchy's, not a site's"));
    }
    return &k;
  }
  return absl::NotFoundError(absl::StrCat("no hierarchy setting \"", name,
                                          "\" (known: ", absl::StrJoin(names, ", "), ")"));
}

absl::Status CheckValue(const Known& k, const std::string& value) {
  if (std::string(k.type) == "bool") {
    if (value != "true" && value != "false")
      return absl::InvalidArgumentError(
          absl::StrCat(k.name, ": true or false, not \"", value, "\""));
    return absl::OkStatus();
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(value, &n) || n < 60 || n > int64_t{10} * 365 * 86400)
    return absl::InvalidArgumentError(
        absl::StrCat(k.name, ": seconds from 60 to 10 years, not \"", value, "\""));
  return absl::OkStatus();
}

absl::Status Read(Call& call, const std::string& name, const Known& k, v1::HierarchySetting* out) {
  ASSIGN_OR_RETURN(Result r, call.tx.Exec(absl::StrCat("SELECT value, ", Ts("updated_at"),
                                                       " FROM global_settings WHERE name = $1"),
                                          {name}));
  out->set_name(name);
  out->set_default_value(k.default_value);
  out->set_description(k.description);
  out->set_is_set(!r.empty());
  out->set_value(r.empty() ? k.default_value : r.GetString(0, 0));
  if (!r.empty()) out->set_updated_at(r.GetString(0, 1));
  return absl::OkStatus();
}

class HierarchySettingServiceImpl final : public v1::HierarchySettingService::Service {
 public:
  explicit HierarchySettingServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListHierarchySettings(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                     v1::HierarchySettingList* out) override {
    return core_.Run(*ctx, __func__, kRead, [&](Call& call) -> absl::Status {
      out->Clear();
      // Every known one, and the per-site ones set.
      std::vector<std::string> names;
      for (const Known& k : kKnown) names.push_back(k.name);
      ASSIGN_OR_RETURN(Result sites,
                       call.tx.Exec("SELECT name FROM global_settings WHERE name LIKE '%/%' "
                                    "ORDER BY name"));
      for (size_t i = 0; i < sites.size(); ++i) names.push_back(sites.GetString(i, 0));
      for (const auto& name : names) {
        auto k = Find(name);
        if (!k.ok()) continue;  // written by hand, or by a newer provider
        if (!req->filter().empty() && !GlobMatch(req->filter(), name)) continue;
        RETURN_IF_ERROR(Read(call, name, **k, out->add_settings()));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status SetHierarchySetting(grpc::ServerContext* ctx, const v1::HierarchySetting* req,
                                   v1::HierarchySetting* out) override {
    return core_.RunAudited(
        *ctx, __func__, kUpdate.name, "hierarchy setting", req->name(),
        [&](Call& call) -> absl::Status {
          ASSIGN_OR_RETURN(const Known* k, Find(req->name()));
          RETURN_IF_ERROR(CheckValue(*k, req->value()));
          v1::HierarchySetting before;
          RETURN_IF_ERROR(Read(call, req->name(), *k, &before));
          RETURN_IF_ERROR(call.tx
                              .Exec("INSERT INTO global_settings (name, value) VALUES ($1, $2) "
                                    "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, "
                                    "updated_at = now()",
                                    {req->name(), req->value()})
                              .status());
          RETURN_IF_ERROR(call.Audit("set", "hierarchy setting", req->name(),
                                     absl::StrCat(before.value(), " -> ", req->value())));
          return Read(call, req->name(), *k, out);
        });
  }

  grpc::Status ResetHierarchySetting(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                     v1::HierarchySetting* out) override {
    return core_.RunAudited(
        *ctx, __func__, kUpdate.name, "hierarchy setting", req->name(),
        [&](Call& call) -> absl::Status {
          ASSIGN_OR_RETURN(const Known* k, Find(req->name()));
          v1::HierarchySetting before;
          RETURN_IF_ERROR(Read(call, req->name(), *k, &before));
          RETURN_IF_ERROR(
              call.tx.Exec("DELETE FROM global_settings WHERE name = $1", {req->name()}).status());
          RETURN_IF_ERROR(
              call.Audit("reset", "hierarchy setting", req->name(),
                         absl::StrCat(before.value(), " -> default ", k->default_value)));
          return Read(call, req->name(), *k, out);
        });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource HierarchySettingsResource() {
  return {"hierarchy_settings", {kUpdate}, [](const ResourceContext& c) {
            return std::make_unique<HierarchySettingServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
