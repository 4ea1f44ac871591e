#include "common/collections/script_runs.h"

#include "common/base/status.h"
#include "common/deploy/script.h"

namespace strata::collections {

absl::Status LoadScriptRuns(store::Transaction& tx, v1::SiteBundle* bundle) {
  ASSIGN_OR_RETURN(
      store::Result runs,
      tx.Exec("SELECT id::text, script, interpreter, body, sha256, arguments, timeout_seconds, "
              "run_as, (extract(epoch FROM expires_at) * 1000)::bigint, (extract(epoch FROM "
              "created_at) * 1000)::bigint FROM script_runs WHERE expires_at > now() - interval "
              "'1 hour' ORDER BY id::text COLLATE \"C\""));
  for (size_t i = 0; i < runs.size(); ++i) {
    v1::ScriptRunPolicy r;
    r.set_name(runs.GetString(i, 0));
    r.set_script(runs.GetString(i, 1));
    r.set_interpreter(runs.GetString(i, 2));
    r.set_body(runs.GetString(i, 3));
    r.set_sha256(runs.GetString(i, 4));
    // A row the provider wrote; one unreadable is served without arguments
    // (the script sees its parameters empty) rather than dropped unseen.
    (void)deploy::ParseArguments(runs.GetString(i, 5), r.mutable_arguments());
    r.set_timeout_seconds(runs.GetInt(i, 6));
    r.set_run_as(runs.GetString(i, 7));
    r.set_expires_unix_ms(runs.GetInt(i, 8));
    r.set_created_unix_ms(runs.GetInt(i, 9));
    *bundle->add_script_runs() = std::move(r);
  }
  return absl::OkStatus();
}

}  // namespace strata::collections
