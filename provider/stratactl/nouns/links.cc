// stratactl get links, diagnose link PEER [--reinitialize]

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/links.grpc.pb.h"

namespace strata::ctl {
namespace {

std::string LinkStateName(v1::LinkState s) {
  switch (s) {
    case v1::LINK_STATE_ACTIVE:
      return "active";
    case v1::LINK_STATE_DEGRADED:
      return "degraded";
    case v1::LINK_STATE_FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

int ListLinks(Client& c) {
  v1::LinkList l;
  if (int rc = c.Call(&v1::LinkService::Stub::ListLinks, c.List(), &l)) return rc;
  Table t{
      {"PEER", "ROLE", "STATE", "CONNECTED", "LAG_CHANGES", "LAG_S", "LAST_CONTACT", "LAST_ERROR"},
      {}};
  for (const auto& k : l.links()) {
    t.rows.push_back(
        {k.peer_site_code(), k.role(), LinkStateName(k.state()),
         k.state() == v1::LINK_STATE_UNSPECIFIED ? "?" : Bool(k.connected()),
         k.lag_changes() < 0 ? "?" : absl::StrCat(k.lag_changes()),
         k.lag_changes() < 0 ? "?" : absl::StrCat(static_cast<int64_t>(k.lag_seconds())),
         k.last_contact_unix_ms() == 0
             ? std::string()
             : absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                absl::FromUnixMillis(k.last_contact_unix_ms()),
                                absl::UTCTimeZone()),
         k.last_error()});
  }
  Show(c.options(), l, l.next_page_token(), t);
  if (!l.degraded_reason().empty()) std::cerr << "note: " << l.degraded_reason() << "\n";
  return kOk;
}

}  // namespace

std::vector<Command> LinkCommands() {
  return {
      {"get",
       "links",
       {"link"},
       "This site's replication links: state, lag, last error",
       [](CLI::App*) -> Action { return ListLinks; }},
      {"diagnose",
       "link",
       {},
       "What is wrong with a replication link (and re-initialize it)",
       [](CLI::App* cmd) -> Action {
         struct State {
           std::string peer;
           bool reinitialize = false;
         };
         auto st = std::make_shared<State>();
         cmd->add_option("peer", st->peer, "The peer site's code")->required();
         cmd->add_flag("--reinitialize", st->reinitialize,
                       "Also re-initialize this site's copy of the peer's data from a snapshot");
         return [st](Client& c) {
           v1::DiagnoseLinkRequest req;
           req.set_peer(st->peer);
           req.set_reinitialize(st->reinitialize);
           v1::LinkDiagnosis d;
           if (int rc = c.Call(&v1::LinkService::Stub::DiagnoseLink, req, &d)) return rc;
           const Options& o = c.options();
           if (o.output == "json") {
             PrintJson(d);
           } else if (o.output == "table") {
             std::cout << "link " << d.link().peer_site_code() << " (" << d.link().role()
                       << "): " << LinkStateName(d.link().state()) << "\n";
             for (const auto& f : d.findings()) {
               std::cout << "  " << f.severity() << ": " << f.text() << "\n";
             }
           } else {
             Table t{{"SEVERITY", "FINDING"}, {}};
             for (const auto& f : d.findings()) t.rows.push_back({f.severity(), f.text()});
             PrintTable(t, o.output);
           }
           return kOk;
         };
       },
       "get sites --all"},
  };
}

}  // namespace strata::ctl
