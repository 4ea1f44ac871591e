#include "common/collections/app_deployments.h"

#include <deque>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/policy/client_settings.h"
#include "google/protobuf/util/json_util.h"

namespace strata::collections {

absl::Status ParseApplication(const std::string& json, v1::Application* out) {
  out->Clear();
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;  // written by a newer provider
  auto s = google::protobuf::util::JsonStringToMessage(json, out, opts);
  if (!s.ok()) return absl::DataLossError(absl::StrCat("application definition: ", s.ToString()));
  return absl::OkStatus();
}

std::string ApplicationJson(const v1::Application& app) {
  std::string json;
  google::protobuf::util::MessageToJsonString(app, &json);
  return json;
}

namespace {

// A digest of what an agent acts on: descriptions, publisher and the
// version shown do not make every agent evaluate the deployment afresh.
std::string Revision(const v1::DeploymentPolicy& d) {
  v1::DeploymentPolicy acted = d;
  auto strip = [](v1::Application* a) {
    a->clear_description();
    a->clear_publisher();
    a->clear_software_version();
  };
  strip(acted.mutable_application());
  for (auto& a : *acted.mutable_dependencies()) strip(&a);
  for (auto& a : *acted.mutable_superseded()) strip(&a);
  return policy::ContentVersion(acted.SerializeAsString());
}

}  // namespace

absl::Status LoadDeploymentPolicies(store::Transaction& tx, v1::SiteBundle* bundle) {
  ASSIGN_OR_RETURN(store::Result apps,
                   tx.Exec("SELECT name, definition FROM applications ORDER BY name"));
  std::map<std::string, v1::Application> by_name;
  for (size_t i = 0; i < apps.size(); ++i) {
    v1::Application app;
    if (!ParseApplication(apps.GetString(i, 1), &app).ok()) continue;  // refused at writing
    app.set_name(apps.GetString(i, 0));
    app.clear_scopes();
    app.clear_created_by();
    app.clear_updated_at();
    by_name[app.name()] = std::move(app);
  }
  ASSIGN_OR_RETURN(
      store::Result deps,
      tx.Exec("SELECT name, application, action, purpose, extract(epoch FROM "
              "available_at)::bigint, extract(epoch FROM deadline)::bigint, max_retries, "
              "retry_seconds, rerun_interrupted, ignore_maintenance_windows, grace_minutes FROM "
              "app_deployments "
              "ORDER BY name COLLATE \"C\""));
  for (size_t i = 0; i < deps.size(); ++i) {
    auto app = by_name.find(deps.GetString(i, 1));
    if (app == by_name.end()) continue;  // deleted meanwhile at another site
    v1::DeploymentPolicy d;
    d.set_name(deps.GetString(i, 0));
    d.set_action(deps.GetString(i, 2));
    d.set_purpose(deps.GetString(i, 3));
    d.set_available_at_unix(deps.GetInt(i, 4));
    d.set_deadline_unix(deps.GetInt(i, 5));
    d.set_max_retries(static_cast<int32_t>(deps.GetInt(i, 6)));
    d.set_retry_seconds(static_cast<int32_t>(deps.GetInt(i, 7)));
    d.set_rerun_interrupted(deps.GetBool(i, 8));
    d.set_ignore_maintenance_windows(deps.GetBool(i, 9));
    d.set_grace_minutes(static_cast<int32_t>(deps.GetInt(i, 10)));
    *d.mutable_application() = app->second;
    // Dependencies, breadth first (the provider keeps them acyclic and
    // shallow; `seen` bounds a cycle made by concurrent edits at two sites).
    std::set<std::string> seen{app->first};
    std::deque<std::string> todo(app->second.depends_on().begin(), app->second.depends_on().end());
    while (!todo.empty()) {
      std::string name = todo.front();
      todo.pop_front();
      if (!seen.insert(name).second) continue;
      auto dep = by_name.find(name);
      if (dep == by_name.end()) continue;
      *d.add_dependencies() = dep->second;
      for (const auto& next : dep->second.depends_on()) todo.push_back(next);
    }
    for (const auto& s : app->second.supersedes()) {
      auto old = by_name.find(s.application());
      if (old != by_name.end()) *d.add_superseded() = old->second;
    }
    d.set_revision(Revision(d));
    *bundle->add_deployments() = std::move(d);
  }
  ASSIGN_OR_RETURN(store::Result windows,
                   tx.Exec("SELECT name, start, utc, duration_minutes, recurrence FROM "
                           "maintenance_windows ORDER BY name COLLATE \"C\""));
  for (size_t i = 0; i < windows.size(); ++i) {
    auto* w = bundle->add_windows();
    w->set_name(windows.GetString(i, 0));
    w->set_start(windows.GetString(i, 1));
    w->set_utc(windows.GetBool(i, 2));
    w->set_duration_minutes(static_cast<int32_t>(windows.GetInt(i, 3)));
    w->set_recurrence(windows.GetString(i, 4));
  }
  return absl::OkStatus();
}

}  // namespace strata::collections
