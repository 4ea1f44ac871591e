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

absl::Status LoadLiveQueries(store::Transaction& tx, v1::SiteBundle* bundle) {
  ASSIGN_OR_RETURN(
      store::Result qs,
      tx.Exec(
          "SELECT id::text, query, select_fields::text, max_rows, (extract(epoch "
          "FROM expires_at) * 1000)::bigint, time_limit_ms FROM live_queries WHERE expires_at > "
          "now() ORDER BY id::text COLLATE \"C\""));
  for (size_t i = 0; i < qs.size(); ++i) {
    v1::LiveQueryPolicy q;
    q.set_name(qs.GetString(i, 0));
    q.set_query(qs.GetString(i, 1));
    for (auto& f : store::ParseTextArray(qs.GetString(i, 2))) q.add_select(std::move(f));
    q.set_max_rows(static_cast<int32_t>(qs.GetInt(i, 3)));
    q.set_max_bytes(kMaxLiveAnswerBytes);
    q.set_time_limit_ms(static_cast<int32_t>(qs.GetInt(i, 5)));
    q.set_expires_unix_ms(qs.GetInt(i, 4));
    *bundle->add_live_queries() = std::move(q);
  }
  return absl::OkStatus();
}

}  // namespace strata::collections
