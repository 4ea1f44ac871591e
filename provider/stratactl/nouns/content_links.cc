// stratactl get content-links, set content-link, delete content-link

#include <memory>

#include "absl/strings/str_cat.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/content_links.grpc.pb.h"

namespace strata::ctl {
namespace {

std::string Rate(int64_t bytes_per_second) {
  return bytes_per_second == 0 ? "no limit" : absl::StrCat(bytes_per_second, " B/s");
}

Action SetLink(CLI::App* cmd) {
  auto req = std::make_shared<v1::ContentLink>();
  auto rate = std::make_shared<int64_t>(0);
  auto hours = std::make_shared<std::string>();
  cmd->add_option("target", *req->mutable_target(),
                  "A site's code (content from its parent) or a DP's name (from its site or "
                  "source DP)")
      ->required();
  cmd->add_option("--max-bytes-per-second", *rate, "The byte rate allowed; 0 (default): no limit")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--hours", *hours,
                  "Hours of the receiver's day content may move: \"0-6,20-23\", \"22-2\"; "
                  "default: any hour");
  return [req, rate, hours](Client& c) {
    req->set_max_bytes_per_second(*rate);
    req->set_hours(*hours);
    v1::ContentLink out;
    if (int rc = c.Call(&v1::ContentLinkService::Stub::SetContentLink, *req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("content link to ", out.kind(), " ", out.target(), ": ",
                           Rate(out.max_bytes_per_second()), ", ",
                           out.hours().empty() ? "any hour" : "hours " + out.hours()),
              out);
    return kOk;
  };
}

}  // namespace

std::vector<Command> ContentLinkCommands() {
  return {
      {"get",
       "content-links",
       {"content-link"},
       "Rate limits and hours of content moving into sites and DPs",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::ContentLinkList l;
           if (int rc = c.ListAll(&v1::ContentLinkService::Stub::ListContentLinks, &l)) return rc;
           Table t{{"TARGET", "KIND", "MAX_BYTES_PER_SECOND", "HOURS", "UPDATED", "BY"}, {}};
           for (const auto& k : l.links())
             t.rows.push_back({k.target(), k.kind(), absl::StrCat(k.max_bytes_per_second()),
                               k.hours().empty() ? "any" : k.hours(), k.updated_at(),
                               k.updated_by()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"set",
       "content-link",
       {},
       "A site's or DP's content rate limit and hours",
       SetLink,
       "get dps --all"},
      {"delete",
       "content-link",
       {},
       "A content link: the target's configuration file decides again",
       DeleteByName(&v1::ContentLinkService::Stub::DeleteContentLink, "content link"),
       "get content-links --all"},
  };
}

}  // namespace strata::ctl
