// Distribution points, DP groups, distributions
// (proto/strata/v1/admin/distribution_points.proto).

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "strata/v1/admin/distribution_points.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"dp.read", "List distribution points and DP groups"};
constexpr Permission kUpdate{
    "dp.update", "Manage DP groups, boundary groups' DPs, and validate content libraries"};
constexpr Permission kDistribute{"package.distribute",
                                 "Distribute packages to distribution points"};

// Known DPs (site data that has reached this site), as MustExist reads a table.
constexpr char kDps[] = "(SELECT DISTINCT name FROM site_systems WHERE role = 'dp')";

absl::Status CheckDpNames(Transaction& tx, const std::vector<std::string>& dps) {
  for (const std::string& dp : dps) RETURN_IF_ERROR(CheckName("dp", dp));
  return MustExist(tx, kDps, "distribution point (attached to a site this site knows)", dps);
}

class DistributionPointServiceImpl final : public v1::DistributionPointService::Service {
 public:
  explicit DistributionPointServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListDistributionPoints(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                      v1::DistributionPointList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = absl::StrCat(
          "SELECT * FROM (SELECT s.name, s.site_code, s.address, s.state, s.version, ",
          Ts("s.last_seen_at"),
          " AS last_seen, (SELECT array_agg(group_name ORDER BY group_name)::text FROM "
          "dp_group_members m WHERE m.dp = s.name) AS groups, (SELECT count(*) FILTER "
          "(WHERE c.state = 'installed') FROM content_status c WHERE c.site_code = s.site_code "
          "AND c.location = s.name) AS installed, (SELECT count(*) FROM content_status c WHERE "
          "c.site_code = s.site_code AND c.location = s.name) AS assigned FROM site_systems s "
          "WHERE s.role = 'dp') x");
      spec.filter_columns = {"name", "site_code"};
      spec.order = {{"name", "name"}, {"site", "site_code, name"}, {"state", "state, name"}};
      spec.default_order = "site_code, name";
      return ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        auto* d = out->add_distribution_points();
        d->set_name(r.GetString(i, 0));
        d->set_site_code(r.GetString(i, 1));
        d->set_address(r.GetString(i, 2));
        d->set_state(r.GetString(i, 3));
        d->set_version(r.GetString(i, 4));
        d->set_last_seen_at(r.GetString(i, 5));
        for (const std::string& g : store::ParseTextArray(r.GetString(i, 6))) d->add_groups(g);
        d->set_packages_installed(static_cast<int32_t>(r.GetInt(i, 7)));
        d->set_packages_assigned(static_cast<int32_t>(r.GetInt(i, 8)));
      });
    });
  }

  grpc::Status ListDpGroups(grpc::ServerContext* ctx, const v1::ListRequest* req,
                            v1::DpGroupList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select =
          "SELECT g.name, g.description, (SELECT array_agg(dp ORDER BY dp)::text FROM "
          "dp_group_members m WHERE m.group_name = g.name) FROM dp_groups g";
      spec.filter_columns = {"g.name"};
      spec.order = {{"name", "g.name"}};
      spec.default_order = "g.name";
      return ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        auto* g = out->add_groups();
        g->set_name(r.GetString(i, 0));
        g->set_description(r.GetString(i, 1));
        for (const std::string& m : store::ParseTextArray(r.GetString(i, 2))) g->add_members(m);
      });
    });
  }

  grpc::Status CreateDpGroup(grpc::ServerContext* ctx, const v1::DpGroup* req,
                             v1::DpGroup* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(CheckName("name", req->name()));
      RETURN_IF_ERROR(CheckText("description", req->description()));
      RETURN_IF_ERROR(CheckNames("members", req->members()));
      RETURN_IF_ERROR(CheckDpNames(call.tx, ToVector(req->members())));
      ASSIGN_OR_RETURN(Result exists,
                       call.tx.Exec("SELECT 1 FROM dp_groups WHERE name = $1", {req->name()}));
      if (!exists.empty())
        return absl::AlreadyExistsError(
            absl::StrCat("DP group \"", req->name(), "\" already exists"));
      RETURN_IF_ERROR(call.tx
                          .Exec("INSERT INTO dp_groups (name, description) VALUES ($1, $2)",
                                {req->name(), req->description()})
                          .status());
      RETURN_IF_ERROR(AddMembers(call.tx, req->name(), ToVector(req->members())));
      RETURN_IF_ERROR(call.Audit("create", "dp group", req->name(),
                                 "members: " + absl::StrJoin(req->members(), ", ")));
      return Read(call.tx, req->name(), out);
    });
  }

  grpc::Status UpdateDpGroup(grpc::ServerContext* ctx, const v1::DpGroupChange* req,
                             v1::DpGroup* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(MustExist(call.tx, "dp_groups", "DP group", {req->name()}));
      RETURN_IF_ERROR(CheckNames("add", req->add()));
      RETURN_IF_ERROR(CheckNames("remove", req->remove()));
      RETURN_IF_ERROR(CheckDpNames(call.tx, ToVector(req->add())));
      RETURN_IF_ERROR(AddMembers(call.tx, req->name(), ToVector(req->add())));
      RETURN_IF_ERROR(call.tx
                          .Exec("DELETE FROM dp_group_members WHERE group_name = $1 AND dp = "
                                "ANY($2::text[])",
                                {req->name(), store::TextArrayLiteral(ToVector(req->remove()))})
                          .status());
      RETURN_IF_ERROR(call.Audit("update", "dp group", req->name(),
                                 absl::StrCat("added: ", absl::StrJoin(req->add(), ", "),
                                              "; removed: ", absl::StrJoin(req->remove(), ", "))));
      return Read(call.tx, req->name(), out);
    });
  }

  grpc::Status DeleteDpGroup(grpc::ServerContext* ctx, const v1::GetRequest* req,
                             v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      ASSIGN_OR_RETURN(Result r, call.tx.Exec("DELETE FROM dp_groups WHERE name = $1 RETURNING 1",
                                              {req->name()}));
      if (r.empty()) return absl::NotFoundError(absl::StrCat("no DP group \"", req->name(), "\""));
      RETURN_IF_ERROR(
          call.tx.Exec("DELETE FROM dp_group_members WHERE group_name = $1", {req->name()})
              .status());
      RETURN_IF_ERROR(call.tx
                          .Exec("DELETE FROM package_distributions WHERE target_type = 'group' "
                                "AND target = $1",
                                {req->name()})
                          .status());
      RETURN_IF_ERROR(call.Audit("delete", "dp group", req->name(), ""));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

  grpc::Status Distribute(grpc::ServerContext* ctx, const v1::Distribution* req,
                          v1::Distribution* out) override {
    return core_.Run(*ctx, __func__, kDistribute.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(CheckDistribution(call.tx, *req));
      for (const auto& [type, targets] :
           {std::pair{"dp", ToVector(req->dps())}, {"group", ToVector(req->groups())}}) {
        RETURN_IF_ERROR(
            call.tx
                .Exec("INSERT INTO package_distributions (package, target_type, "
                      "target, created_by) SELECT $1, $2, t, $4 FROM unnest($3::text[]) t "
                      "ON CONFLICT DO NOTHING",
                      {req->package(), type, store::TextArrayLiteral(targets), call.caller.name})
                .status());
      }
      RETURN_IF_ERROR(call.Audit("distribute", "package", req->package(), Targets(*req)));
      *out = *req;
      return absl::OkStatus();
    });
  }

  grpc::Status Undistribute(grpc::ServerContext* ctx, const v1::Distribution* req,
                            v1::Distribution* out) override {
    return core_.Run(*ctx, __func__, kDistribute.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(MustExist(call.tx, "packages", "package", {req->package()}));
      if (req->dps_size() + req->groups_size() == 0)
        return absl::InvalidArgumentError("name at least one --dp or --dp-group");
      ASSIGN_OR_RETURN(
          Result r,
          call.tx.Exec("DELETE FROM package_distributions WHERE package = $1 AND ((target_type "
                       "= 'dp' AND target = ANY($2::text[])) OR (target_type = 'group' AND "
                       "target = ANY($3::text[]))) RETURNING 1",
                       {req->package(), store::TextArrayLiteral(ToVector(req->dps())),
                        store::TextArrayLiteral(ToVector(req->groups()))}));
      if (r.empty())
        return absl::NotFoundError(
            absl::StrCat("package \"", req->package(), "\" is not distributed to ", Targets(*req)));
      RETURN_IF_ERROR(call.Audit("undistribute", "package", req->package(), Targets(*req)));
      *out = *req;
      return absl::OkStatus();
    });
  }

  grpc::Status SetBoundaryGroupDps(grpc::ServerContext* ctx, const v1::BoundaryGroupDps* req,
                                   v1::BoundaryGroupDps* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(
          MustExist(call.tx, "boundary_groups", "boundary group", {req->boundary_group()}));
      RETURN_IF_ERROR(CheckNames("dps", req->dps()));
      RETURN_IF_ERROR(CheckDpNames(call.tx, ToVector(req->dps())));
      RETURN_IF_ERROR(
          call.tx
              .Exec("DELETE FROM boundary_group_dps WHERE group_name = $1", {req->boundary_group()})
              .status());
      RETURN_IF_ERROR(
          call.tx
              .Exec("INSERT INTO boundary_group_dps (group_name, dp, position) SELECT "
                    "$1, d, n FROM unnest($2::text[]) WITH ORDINALITY AS u(d, n)",
                    {req->boundary_group(), store::TextArrayLiteral(ToVector(req->dps()))})
              .status());
      RETURN_IF_ERROR(call.Audit("update", "boundary group", req->boundary_group(),
                                 "distribution points: " + absl::StrJoin(req->dps(), ", ")));
      *out = *req;
      return absl::OkStatus();
    });
  }

  grpc::Status ValidateContent(grpc::ServerContext* ctx, const v1::ValidationRequest* req,
                               v1::ValidationRequest* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(
          MustExist(call.tx, "(SELECT code AS name FROM sites)", "site", {req->site_code()}));
      const std::string location = req->dp().empty() ? "site" : req->dp();
      if (!req->dp().empty()) {
        ASSIGN_OR_RETURN(Result r, call.tx.Exec("SELECT 1 FROM site_systems WHERE role = 'dp' "
                                                "AND name = $1 AND site_code = $2",
                                                {req->dp(), req->site_code()}));
        if (r.empty())
          return absl::NotFoundError(
              absl::StrCat("no distribution point \"", req->dp(), "\" at site ", req->site_code()));
      }
      ASSIGN_OR_RETURN(
          Result r,
          call.tx.Exec(absl::StrCat("INSERT INTO content_validation_requests (site_code, "
                                    "location, requested_at, requested_by) VALUES ($1, $2, now(), "
                                    "$3) ON CONFLICT (site_code, location) DO UPDATE SET "
                                    "requested_at = now(), requested_by = $3 RETURNING ",
                                    Ts("requested_at")),
                       {req->site_code(), location, call.caller.name}));
      RETURN_IF_ERROR(call.Audit("validate", "content library",
                                 absl::StrCat(req->site_code(), " ", location), ""));
      *out = *req;
      out->set_requested_at(r.GetString(0, 0));
      return absl::OkStatus();
    });
  }

 private:
  static std::string Targets(const v1::Distribution& d) {
    std::vector<std::string> t;
    for (const auto& x : d.dps()) t.push_back("DP " + x);
    for (const auto& x : d.groups()) t.push_back("DP group " + x);
    return absl::StrJoin(t, ", ");
  }

  absl::Status CheckDistribution(Transaction& tx, const v1::Distribution& d) {
    RETURN_IF_ERROR(MustExist(tx, "packages", "package", {d.package()}));
    if (d.dps_size() + d.groups_size() == 0)
      return absl::InvalidArgumentError("name at least one --dp or --dp-group");
    RETURN_IF_ERROR(CheckNames("dps", d.dps()));
    RETURN_IF_ERROR(CheckNames("groups", d.groups()));
    RETURN_IF_ERROR(CheckDpNames(tx, ToVector(d.dps())));
    return MustExist(tx, "dp_groups", "DP group", ToVector(d.groups()));
  }

  static absl::Status AddMembers(Transaction& tx, const std::string& group,
                                 const std::vector<std::string>& dps) {
    return tx
        .Exec(
            "INSERT INTO dp_group_members (group_name, dp) SELECT $1, d FROM unnest($2::text[]) "
            "d ON CONFLICT DO NOTHING",
            {group, store::TextArrayLiteral(dps)})
        .status();
  }

  static absl::Status Read(Transaction& tx, const std::string& name, v1::DpGroup* out) {
    ASSIGN_OR_RETURN(Result r,
                     tx.Exec("SELECT description, (SELECT array_agg(dp ORDER BY dp)::text "
                             "FROM dp_group_members WHERE group_name = $1) FROM "
                             "dp_groups WHERE name = $1",
                             {name}));
    out->Clear();
    out->set_name(name);
    if (r.empty()) return absl::OkStatus();
    out->set_description(r.GetString(0, 0));
    for (const std::string& m : store::ParseTextArray(r.GetString(0, 1))) out->add_members(m);
    return absl::OkStatus();
  }

  CallCore& core_;
};

}  // namespace

Resource DistributionPointsResource() {
  return {"distribution-points", {kRead, kUpdate, kDistribute}, [](const ResourceContext& c) {
            return std::make_unique<DistributionPointServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
