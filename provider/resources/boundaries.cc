// Boundaries and boundary groups (proto/strata/v1/admin/boundaries.proto).

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/net/boundary.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "strata/v1/admin/boundaries.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"boundary.read", "List boundaries and boundary groups"};
constexpr Permission kCreate{"boundary.create", "Create boundaries and boundary groups"};
constexpr Permission kUpdate{"boundary.update", "Change boundaries and boundary groups"};
constexpr Permission kDelete{"boundary.delete", "Delete boundaries and boundary groups"};

class BoundaryServiceImpl final : public v1::BoundaryService::Service {
 public:
  explicit BoundaryServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListBoundaries(grpc::ServerContext* ctx, const v1::ListRequest* req,
                              v1::BoundaryList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = "SELECT name, value, group_name FROM boundaries";
      spec.filter_columns = {"name", "group_name"};
      spec.order = {{"name", "name"}, {"group", "group_name"}};
      spec.default_order = "name";
      return ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        auto* b = out->add_boundaries();
        b->set_name(r.GetString(i, 0));
        b->set_value(r.GetString(i, 1));
        b->set_group(r.GetString(i, 2));
      });
    });
  }

  grpc::Status CreateBoundary(grpc::ServerContext* ctx, const v1::Boundary* req,
                              v1::Boundary* out) override {
    return core_.Run(*ctx, __func__, kCreate.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(CheckName("name", req->name()));
      RETURN_IF_ERROR(CheckBoundaryValue(req->value()));
      RETURN_IF_ERROR(MustExist(call.tx, "boundary_groups", "boundary group", {req->group()}));
      ASSIGN_OR_RETURN(Result exists,
                       call.tx.Exec("SELECT 1 FROM boundaries WHERE name = $1", {req->name()}));
      if (!exists.empty()) {
        return absl::AlreadyExistsError(
            absl::StrCat("boundary \"", req->name(), "\" already exists"));
      }
      RETURN_IF_ERROR(call.tx
                          .Exec("INSERT INTO boundaries (name, value, group_name) VALUES "
                                "($1, $2, $3)",
                                {req->name(), req->value(), req->group()})
                          .status());
      RETURN_IF_ERROR(call.Audit("create", "boundary", req->name(),
                                 absl::StrCat(req->value(), " -> group ", req->group())));
      *out = *req;
      return absl::OkStatus();
    });
  }

  grpc::Status DeleteBoundary(grpc::ServerContext* ctx, const v1::GetRequest* req,
                              v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kDelete.name, [&](Call& call) -> absl::Status {
      ASSIGN_OR_RETURN(Result r, call.tx.Exec("DELETE FROM boundaries WHERE name = $1 "
                                              "RETURNING value, group_name",
                                              {req->name()}));
      if (r.empty()) {
        return absl::NotFoundError(absl::StrCat("no boundary \"", req->name(), "\""));
      }
      RETURN_IF_ERROR(
          call.Audit("delete", "boundary", req->name(),
                     absl::StrCat("was ", r.GetString(0, 0), " -> group ", r.GetString(0, 1))));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

  grpc::Status ListBoundaryGroups(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                  v1::BoundaryGroupList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = "SELECT name, assigned_site FROM boundary_groups";
      spec.filter_columns = {"name"};
      spec.order = {{"name", "name"}, {"site", "assigned_site"}};
      spec.default_order = "name";
      return ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        auto* g = out->add_groups();
        g->set_name(r.GetString(i, 0));
        g->set_assigned_site(r.GetString(i, 1));
      });
    });
  }

  grpc::Status CreateBoundaryGroup(grpc::ServerContext* ctx, const v1::BoundaryGroup* req,
                                   v1::BoundaryGroup* out) override {
    return core_.Run(*ctx, __func__, kCreate.name, [&](Call& call) -> absl::Status {
      RETURN_IF_ERROR(CheckName("name", req->name()));
      ASSIGN_OR_RETURN(Result site, call.tx.Exec("SELECT type FROM sites WHERE code = $1",
                                                 {req->assigned_site()}));
      if (site.empty()) {
        return absl::NotFoundError(
            absl::StrCat("no site \"", req->assigned_site(), "\" in the hierarchy"));
      }
      if (site.GetString(0, 0) == "cas") {
        return absl::InvalidArgumentError(
            absl::StrCat("assigned_site: ", req->assigned_site(),
                         " is the central administration site, which has no clients; assign a "
                         "primary or secondary site"));
      }
      ASSIGN_OR_RETURN(Result exists, call.tx.Exec("SELECT 1 FROM boundary_groups WHERE name = $1",
                                                   {req->name()}));
      if (!exists.empty()) {
        return absl::AlreadyExistsError(
            absl::StrCat("boundary group \"", req->name(), "\" already exists"));
      }
      RETURN_IF_ERROR(call.tx
                          .Exec("INSERT INTO boundary_groups (name, assigned_site) "
                                "VALUES ($1, $2)",
                                {req->name(), req->assigned_site()})
                          .status());
      RETURN_IF_ERROR(call.Audit("create", "boundary group", req->name(),
                                 "assigned to " + req->assigned_site()));
      *out = *req;
      return absl::OkStatus();
    });
  }

  grpc::Status DeleteBoundaryGroup(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                   v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kDelete.name, [&](Call& call) -> absl::Status {
      ASSIGN_OR_RETURN(Result used, call.tx.Exec("SELECT string_agg(name, ', ' ORDER BY name) FROM "
                                                 "boundaries WHERE group_name = $1",
                                                 {req->name()}));
      if (!used.IsNull(0, 0)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "boundary group \"", req->name(), "\" still has boundaries: ", used.GetString(0, 0)));
      }
      ASSIGN_OR_RETURN(Result r, call.tx.Exec("DELETE FROM boundary_groups WHERE name = $1 "
                                              "RETURNING assigned_site",
                                              {req->name()}));
      if (r.empty()) {
        return absl::NotFoundError(absl::StrCat("no boundary group \"", req->name(), "\""));
      }
      RETURN_IF_ERROR(call.Audit("delete", "boundary group", req->name(),
                                 "was assigned to " + r.GetString(0, 0)));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource BoundariesResource() {
  return {"boundaries", {kRead, kCreate, kUpdate, kDelete}, [](const ResourceContext& c) {
            return std::make_unique<BoundaryServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
