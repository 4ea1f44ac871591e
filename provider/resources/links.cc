// Replication links, live from the site server
// (proto/strata/v1/admin/links.proto).

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/config.h"
#include "common/base/status.h"
#include "common/replication/change_log.h"
#include "common/replication/wal_reader.h"
#include "provider/input.h"
#include "provider/resource.h"
#include "strata/v1/admin/links.grpc.pb.h"
#include "strata/v1/site_link.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRead{"link.read", "List and diagnose replication links"};
constexpr Permission kReinit{"link.reinit", "Re-initialize a link's data from a snapshot"};

class LinkServiceImpl final : public v1::LinkService::Service {
 public:
  explicit LinkServiceImpl(const ResourceContext& c)
      : core_(*c.core),
        site_(c.site),
        site_address_(c.config->site_address()),
        site_stub_(c.site_channel ? v1::SiteLink::NewStub(c.site_channel) : nullptr) {}

  grpc::Status ListLinks(grpc::ServerContext* ctx, const v1::ListRequest* req,
                         v1::LinkList* out) override {
    // Asked before the transaction: no database connection waits on it.
    std::string degraded;
    std::optional<std::vector<v1::LinkStatus>> live = LiveLinks(*ctx, &degraded);
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();  // a retried transaction starts over
      std::vector<v1::LinkStatus> links;
      if (live) {
        links = *live;
      } else {
        out->set_degraded_reason(degraded);
        ASSIGN_OR_RETURN(links, DatabaseLinks(call.tx));
      }
      const std::string pattern = absl::AsciiStrToLower(req->filter());
      for (auto& l : links) {
        if (!pattern.empty() && !GlobMatch(pattern, absl::AsciiStrToLower(l.peer_site_code()))) {
          continue;
        }
        *out->add_links() = std::move(l);
      }
      return absl::OkStatus();
    });
  }

  grpc::Status DiagnoseLink(grpc::ServerContext* ctx, const v1::DiagnoseLinkRequest* req,
                            v1::LinkDiagnosis* out) override {
    std::string degraded;
    std::optional<std::vector<v1::LinkStatus>> live = LiveLinks(*ctx, &degraded);
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      Transaction& tx = call.tx;
      out->Clear();  // a retried transaction starts over
      RETURN_IF_ERROR(ValidateSiteCode(req->peer()));
      if (req->reinitialize()) RETURN_IF_ERROR(call.Require(kReinit.name, "link", req->peer()));
      std::vector<v1::LinkStatus> links;
      if (live) {
        links = *live;
      } else {
        ASSIGN_OR_RETURN(links, DatabaseLinks(tx));
      }
      auto add = [&](const char* severity, const std::string& text) {
        auto* f = out->add_findings();
        f->set_severity(severity);
        f->set_text(text);
      };
      const v1::LinkStatus* link = nullptr;
      for (const auto& l : links) {
        if (l.peer_site_code() == req->peer()) link = &l;
      }
      if (link == nullptr) {
        return absl::NotFoundError(absl::StrCat("site ", site_, " has no link to ", req->peer()));
      }
      *out->mutable_link() = *link;
      if (!degraded.empty()) add("error", degraded);
      if (degraded.empty() && !link->connected()) {
        add("error", absl::StrCat("not connected", link->last_error().empty() ? "" : ": ",
                                  link->last_error(), ". Check that site ", req->peer(),
                                  "'s server runs and that the two can reach each other "
                                  "(addresses, certificates); see both site servers' logs."));
      } else if (!link->last_error().empty()) {
        add("warning", "last error: " + link->last_error());
      }
      if (link->lag_changes() > 0) {
        add(link->state() == v1::LINK_STATE_ACTIVE ? "ok" : "warning",
            absl::StrCat(link->lag_changes(), " changes of this site not yet acknowledged by ",
                         req->peer(), " (oldest ", static_cast<int64_t>(link->lag_seconds()),
                         " s)"));
      }
      ASSIGN_OR_RETURN(Result in, tx.Exec("SELECT extract(epoch FROM now() - updated_at)::bigint "
                                          "FROM repl_inbound WHERE peer = $1",
                                          {req->peer()}));
      if (in.empty()) {
        add("warning", absl::StrCat("nothing applied from ", req->peer(),
                                    " yet: it sends a snapshot when the link next connects"));
      } else {
        add("ok", absl::StrCat("last applied from ", req->peer(), " ", in.GetInt(0, 0), " s ago"));
      }
      // As the link itself decides (SnapshotReason): can the peer resume
      // from its slot?
      ASSIGN_OR_RETURN(
          Result acked,
          tx.Exec("SELECT xid, log_id FROM repl_outbound WHERE peer = $1 AND xid IS NOT NULL",
                  {req->peer()}));
      ASSIGN_OR_RETURN(replication::SlotState slot,
                       replication::ReadSlot(tx, replication::SlotName(site_, req->peer())));
      if (!acked.empty()) {
        ASSIGN_OR_RETURN(replication::LogHead head, replication::ReadLogHead(tx));
        const char* reason = replication::SnapshotReason(
            slot, head.epoch, head.epoch,
            replication::WalPosition{acked.GetInt(0, 0), acked.GetInt(0, 1)});
        if (reason != nullptr) {
          add("warning", absl::StrCat(req->peer(),
                                      " is re-initialized from a snapshot when it "
                                      "reconnects (",
                                      reason, ")"));
        }
      }
      if (slot.exists) {
        add("ok", absl::StrCat("this site keeps ", slot.wal_bytes / 1024, " KiB of WAL that ",
                               req->peer(), " has not acknowledged"));
      }
      if (out->findings_size() > 0 && link->state() == v1::LINK_STATE_ACTIVE && degraded.empty()) {
        add("ok", "active: connected, changes flowing");
      }
      if (req->reinitialize()) {
        // Forgetting what was applied from the peer makes this site refuse
        // its next batch; the peer then reconnects and sends a snapshot,
        // which also removes rows it no longer has.
        // The applier holds this row while it applies a batch or a snapshot:
        // wait a little, not for minutes.
        RETURN_IF_ERROR(tx.Exec("SET LOCAL lock_timeout = '3s'").status());
        absl::Status del =
            tx.Exec("DELETE FROM repl_inbound WHERE peer = $1", {req->peer()}).status();
        if (!del.ok()) {
          return absl::UnavailableError(absl::StrCat(
              "the link to ", req->peer(), " is busy applying a batch or a snapshot; try again (",
              del.message(), ")"));
        }
        RETURN_IF_ERROR(call.Audit("reinitialize", "link", req->peer(),
                                   absl::StrCat("state ", v1::LinkState_Name(link->state()),
                                                ", lag ", link->lag_changes(), " changes")));
        out->set_reinitialized(true);
        add("ok", absl::StrCat("re-initialization requested: ", site_,
                               " refuses the next batch from ", req->peer(),
                               ", which then sends a full snapshot (at its next change or "
                               "reconnection)"));
      }
      return absl::OkStatus();
    });
  }

 private:
  // The site server's live link state, or nullopt with `degraded` saying
  // why (no site_address, or it does not answer within 5 s or the caller's
  // deadline).
  std::optional<std::vector<v1::LinkStatus>> LiveLinks(const grpc::ServerContext& server_ctx,
                                                       std::string* degraded) {
    if (!site_stub_) {
      *degraded = "this provider has no site_address: showing the database's view only";
      return std::nullopt;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::min(std::chrono::system_clock::now() + std::chrono::seconds(5),
                              server_ctx.deadline()));
    v1::SiteStatus status;
    grpc::Status s = site_stub_->GetStatus(&ctx, v1::GetStatusRequest(), &status);
    if (!s.ok()) {
      *degraded =
          absl::StrCat("the site server (", site_address_, ") does not answer: ", s.error_message(),
                       "; links run inside it, so start it or check its log");
      return std::nullopt;
    }
    return std::vector<v1::LinkStatus>(status.links().begin(), status.links().end());
  }

  // The links this database knows of (its parent, its children, peers it
  // exchanged changes with), state unknown.
  absl::StatusOr<std::vector<v1::LinkStatus>> DatabaseLinks(Transaction& tx) {
    ASSIGN_OR_RETURN(Result r,
                     tx.Exec("SELECT peer, bool_or(parent) FROM (SELECT parent AS peer, true AS "
                             "parent FROM sites WHERE code = $1 AND parent IS NOT NULL UNION ALL "
                             "SELECT code, false FROM sites WHERE parent = $1 UNION ALL SELECT "
                             "peer, false FROM repl_inbound UNION ALL SELECT peer, false FROM "
                             "repl_outbound) p GROUP BY peer ORDER BY peer",
                             {site_}));
    std::vector<v1::LinkStatus> out;
    for (size_t i = 0; i < r.size(); ++i) {
      v1::LinkStatus l;
      l.set_peer_site_code(r.GetString(i, 0));
      l.set_role(r.GetBool(i, 1) ? "parent" : "child");
      l.set_state(v1::LINK_STATE_UNSPECIFIED);
      l.set_lag_changes(-1);  // unknown without the site server
      out.push_back(std::move(l));
    }
    return out;
  }

  CallCore& core_;
  const std::string site_;
  const std::string site_address_;
  std::unique_ptr<v1::SiteLink::Stub> site_stub_;
};

}  // namespace

Resource LinksResource() {
  return {"links", {kRead, kReinit}, [](const ResourceContext& c) {
            return std::make_unique<LinkServiceImpl>(c);
          }};
}

}  // namespace strata::provider
