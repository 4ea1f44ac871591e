// stratactl get enrollment-tokens, create enrollment-token NAME, revoke
// enrollment-token NAME

#include <memory>

#include "absl/strings/str_cat.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/enrollment_tokens.grpc.pb.h"

namespace strata::ctl {

std::vector<Command> EnrollmentTokenCommands() {
  return {
      {"get",
       "enrollment-tokens",
       {"enrollment-token", "tokens", "token"},
       "Enrollment tokens: state, expiry and uses (never the tokens themselves)",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::EnrollmentTokenList l;
           if (int rc = c.ListAll(&v1::EnrollmentTokenService::Stub::ListEnrollmentTokens, &l)) {
             return rc;
           }
           Table t{{"NAME", "STATE", "USES", "MAX_USES", "EXPIRES", "CREATED", "CREATED_BY",
                    "DESCRIPTION"},
                   {}};
           for (const auto& k : l.tokens()) {
             t.rows.push_back({k.name(), k.state(), absl::StrCat(k.uses()),
                               k.max_uses() > 0 ? absl::StrCat(k.max_uses()) : "-",
                               k.expires_at().empty() ? "never" : k.expires_at(), k.created_at(),
                               k.created_by(), k.description()});
           }
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"create",
       "enrollment-token",
       {"token"},
       "Make an enrollment token for registering clients (shown once)",
       [](CLI::App* cmd) -> Action {
         struct State {
           std::string name, description, valid_for;
           int max_uses = 0;
         };
         auto st = std::make_shared<State>();
         cmd->add_option("name", st->name, "A name to know and revoke it by")->required();
         cmd->add_option("--description", st->description, "What it is for");
         cmd->add_option("--valid-for", st->valid_for,
                         "It expires after this long (300, 5m, 1h, 30d; default: never)");
         cmd->add_option("--max-uses", st->max_uses,
                         "At most this many registrations (default: unlimited)")
             ->check(CLI::Range(1, 1000000));
         return [st](Client& c) {
           v1::CreateEnrollmentTokenRequest req;
           req.set_name(st->name);
           req.set_description(st->description);
           req.set_max_uses(st->max_uses);
           if (!st->valid_for.empty()) {
             const int64_t s = ParseDuration(st->valid_for);
             if (s <= 0) {
               std::cerr << "stratactl: --valid-for takes a duration (300, 5m, 1h, 30d), not \""
                         << st->valid_for << "\"\n";
               return kUsage;
             }
             req.set_valid_seconds(s);
           }
           v1::EnrollmentToken out;
           if (int rc =
                   c.Call(&v1::EnrollmentTokenService::Stub::CreateEnrollmentToken, req, &out)) {
             return rc;
           }
           PrintDone(
               c.options(),
               absl::StrCat("enrollment token \"", out.name(), "\" created",
                            out.expires_at().empty() ? "" : ", valid until " + out.expires_at(),
                            out.max_uses() > 0
                                ? absl::StrCat(", for ", out.max_uses(), " registrations")
                                : "",
                            ". Give it to clients (strata-agent --token); it is not shown "
                            "again:\n",
                            out.token()),
               out);
           return kOk;
         };
       }},
      {"revoke",
       "enrollment-token",
       {"token"},
       "Revoke an enrollment token: registrations with it are refused from now on",
       OnName(&v1::EnrollmentTokenService::Stub::RevokeEnrollmentToken,
              std::function<void(const Options&, const v1::EnrollmentToken&)>(
                  [](const Options& o, const v1::EnrollmentToken& out) {
                    PrintDone(o,
                              absl::StrCat("enrollment token \"", out.name(),
                                           "\" revoked; clients registered with it stay "
                                           "registered"),
                              out);
                  }),
              "The token's name (or sha256:PREFIX as listed)"),
       "get enrollment-tokens --all"},
  };
}

}  // namespace strata::ctl
