// Site systems: management points (later distribution points) of every
// site this one sees (proto/strata/v1/admin/site_systems.proto). Their site
// server records them (common/site/client_service.cc).

#include "absl/strings/str_cat.h"
#include "provider/listing.h"
#include "provider/resource.h"
#include "strata/v1/admin/site_systems.grpc.pb.h"

namespace strata::provider {
namespace {

// Heard from within this long: online; else unknown (its site server may be
// down, or its data late), unless it was seen going offline.
constexpr int kOnlineWithinSeconds = 180;

class SiteSystemServiceImpl final : public v1::SiteSystemService::Service {
 public:
  explicit SiteSystemServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListSiteSystems(grpc::ServerContext* ctx, const v1::ListRequest* req,
                               v1::SiteSystemList* out) override {
    return core_.Run(*ctx, __func__, "site.read", [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = absl::StrCat(
          "SELECT site_code, role, name, address, CASE WHEN state = 'offline' THEN 'offline' "
          "WHEN last_seen_at > now() - make_interval(secs => ",
          kOnlineWithinSeconds, ") THEN 'online' ELSE 'unknown' END, version, clients_connected, ",
          Ts("last_seen_at"), " FROM site_systems");
      spec.filter_columns = {"name", "site_code"};
      spec.order = {{"name", "name"}, {"site", "site_code"}, {"clients", "clients_connected"}};
      spec.default_order = "site_code, role, name";
      return ListPage(call.tx, *req, spec, {}, out, [&](const Result& r, size_t i) {
        auto* s = out->add_systems();
        s->set_site_code(r.GetString(i, 0));
        s->set_role(r.GetString(i, 1));
        s->set_name(r.GetString(i, 2));
        s->set_address(r.GetString(i, 3));
        s->set_state(r.GetString(i, 4));
        s->set_version(r.GetString(i, 5));
        s->set_clients_connected(r.GetInt(i, 6));
        s->set_last_contact_at(r.GetString(i, 7));
      });
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

// Reading site systems is part of reading sites (site.read, declared there).
Resource SiteSystemsResource() {
  return {"site systems", {}, [](const ResourceContext& c) {
            return std::make_unique<SiteSystemServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
