// Content links (proto/strata/v1/admin/content_links.proto): the rate and
// hours of content moving into a site's or a DP's library, as global data.
// Applied by the site content manager (common/site/content.cc) and sent to
// DPs with their assignment (common/site/dp_link.cc).

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/content/transfer.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/resource.h"
#include "strata/v1/admin/content_links.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"transfer.read",
                           "List content links (rate limits and hours of content transfers)"};
constexpr Permission kUpdate{"transfer.update", "Set or remove content links"};

constexpr int64_t kMaxRate = int64_t{100} * 1000 * 1000 * 1000;  // 100 GB/s

// A target is a site or a DP: which one, from the rows this site holds.
constexpr char kKind[] =
    "CASE WHEN EXISTS (SELECT 1 FROM sites s WHERE s.code = l.target) THEN 'site' ELSE 'dp' END";

std::string LinkSelect() {
  return absl::StrCat("SELECT l.target, ", kKind, ", l.max_bytes_per_second, l.hours, ",
                      Ts("l.updated_at"), ", l.updated_by FROM content_links l");
}

void FillLink(const Result& r, size_t i, v1::ContentLink* l) {
  l->set_target(r.GetString(i, 0));
  l->set_kind(r.GetString(i, 1));
  l->set_max_bytes_per_second(r.GetInt(i, 2));
  l->set_hours(r.GetString(i, 3));
  l->set_updated_at(r.GetString(i, 4));
  l->set_updated_by(r.GetString(i, 5));
}

class ContentLinkServiceImpl final : public v1::ContentLinkService::Service {
 public:
  explicit ContentLinkServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status ListContentLinks(grpc::ServerContext* ctx, const v1::ListRequest* req,
                                v1::ContentLinkList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) {
      out->Clear();
      ListSpec spec;
      spec.select = LinkSelect();
      spec.filter_columns = {"l.target"};
      spec.order = {{"target", "l.target"}, {"updated", "l.updated_at"}};
      spec.default_order = "l.target";
      return ListPage(call.tx, *req, spec, {}, out,
                      [&](const Result& r, size_t i) { FillLink(r, i, out->add_links()); });
    });
  }

  grpc::Status SetContentLink(grpc::ServerContext* ctx, const v1::ContentLink* req,
                              v1::ContentLink* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      out->Clear();
      RETURN_IF_ERROR(CheckName("target", req->target()));
      if (req->max_bytes_per_second() < 0 || req->max_bytes_per_second() > kMaxRate)
        return absl::InvalidArgumentError(absl::StrCat("max_bytes_per_second: 0 (no limit) to ",
                                                       kMaxRate, ", not ",
                                                       req->max_bytes_per_second()));
      if (auto h = content::TransferHours::Parse(req->hours()); !h.ok()) return h.status();
      ASSIGN_OR_RETURN(Result known,
                       call.tx.Exec("SELECT EXISTS (SELECT 1 FROM sites WHERE code = $1) OR "
                                    "EXISTS (SELECT 1 FROM site_systems WHERE role = 'dp' AND "
                                    "name = $1)",
                                    {req->target()}));
      if (known.GetString(0, 0) != "t")
        return absl::NotFoundError(absl::StrCat(
            "no site or distribution point \"", req->target(),
            "\" (a site by its code; a DP by its name, once it has attached: get dps)"));
      RETURN_IF_ERROR(
          call.tx
              .Exec("INSERT INTO content_links (target, max_bytes_per_second, hours, updated_by) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (target) DO UPDATE SET "
                    "max_bytes_per_second = EXCLUDED.max_bytes_per_second, hours = "
                    "EXCLUDED.hours, updated_by = EXCLUDED.updated_by, updated_at = now()",
                    {req->target(), std::to_string(req->max_bytes_per_second()), req->hours(),
                     call.caller.name})
              .status());
      RETURN_IF_ERROR(call.Audit("set", "content link", req->target(),
                                 absl::StrCat("max_bytes_per_second=", req->max_bytes_per_second(),
                                              " hours=\"", req->hours(), "\"")));
      ASSIGN_OR_RETURN(Result r,
                       call.tx.Exec(LinkSelect() + " WHERE l.target = $1", {req->target()}));
      if (!r.empty()) FillLink(r, 0, out);
      return absl::OkStatus();
    });
  }

  grpc::Status DeleteContentLink(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                 v1::Deleted* out) override {
    return core_.Run(*ctx, __func__, kUpdate.name, [&](Call& call) -> absl::Status {
      ASSIGN_OR_RETURN(Result r, call.tx.Exec("DELETE FROM content_links WHERE target = $1 "
                                              "RETURNING max_bytes_per_second, hours",
                                              {req->name()}));
      if (r.empty())
        return absl::NotFoundError(absl::StrCat("no content link \"", req->name(),
                                                "\" (its configuration file decides already)"));
      RETURN_IF_ERROR(call.Audit("delete", "content link", req->name(),
                                 absl::StrCat("was max_bytes_per_second=", r.GetInt(0, 0),
                                              " hours=\"", r.GetString(0, 1), "\"")));
      out->set_name(req->name());
      return absl::OkStatus();
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource ContentLinksResource() {
  return {"content links", {kRead, kUpdate}, [](const ResourceContext& c) {
            return std::make_unique<ContentLinkServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
