// Sites of the hierarchy (proto/strata/v1/admin/sites.proto).

#include "provider/listing.h"
#include "provider/resource.h"
#include "strata/v1/admin/sites.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"site.read", "List the sites of the hierarchy and their site systems"};

class SiteServiceImpl final : public v1::SiteService::Service {
 public:
  explicit SiteServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListSites(grpc::ServerContext* ctx, const v1::ListRequest* req,
                         v1::SiteList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = absl::StrCat("SELECT code, type, coalesce(parent, ''), version, state, ",
                                 Ts("attached_at"), " FROM sites");
      spec.filter_columns = {"code"};
      spec.order = {{"code", "code"}, {"type", "type"}};
      spec.default_order = "code";
      return ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        auto* s = out->add_sites();
        s->set_code(r.GetString(i, 0));
        s->set_type(r.GetString(i, 1));
        s->set_parent(r.GetString(i, 2));
        s->set_version(r.GetString(i, 3));
        s->set_state(r.GetString(i, 4));
        s->set_attached_at(r.GetString(i, 5));
      });
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource SitesResource() {
  return {"sites", {kRead}, [](const ResourceContext& c) {
            return std::make_unique<SiteServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
