// stratactl get client-settings, describe / create / update / delete /
// deploy / undeploy client-setting NAME

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/client_settings.grpc.pb.h"

namespace strata::ctl {
namespace {

std::string SettingValue(bool has, int64_t v) { return has ? Duration(v) : "-"; }

// Client setting flags: durations as 300, 5m, 1h or 7d.
struct SettingFlags {
  std::string poll, inventory, heartbeat, splay;
  int priority = 0;

  void Declare(CLI::App* cmd, const char* priority_help) {
    cmd->add_option("--priority", priority, priority_help)->check(CLI::Range(1, 9999));
    cmd->add_option("--policy-poll", poll, "Policy polling interval (300, 5m, 1h, 7d)");
    cmd->add_option("--inventory", inventory, "Inventory interval");
    cmd->add_option("--heartbeat", heartbeat, "Heartbeat interval");
    cmd->add_option("--splay", splay, "Random delay before scheduled work");
  }

  // Sets the fields given on `m` (ClientSetting or UpdateClientSettingRequest);
  // false, after saying why, for a value that is not a duration.
  template <typename M>
  bool ApplyTo(M* m) const {
    struct {
      const std::string& text;
      const char* flag;
      void (M::*set)(int64_t);
    } fields[] = {{poll, "--policy-poll", &M::set_policy_poll_seconds},
                  {inventory, "--inventory", &M::set_inventory_seconds},
                  {heartbeat, "--heartbeat", &M::set_heartbeat_seconds},
                  {splay, "--splay", &M::set_splay_seconds}};
    for (const auto& f : fields) {
      if (f.text.empty()) continue;
      const int64_t v = ParseDuration(f.text);
      if (v < 0) {
        std::cerr << "stratactl: " << f.flag << " takes seconds or a duration (300, 5m, 1h, 7d), "
                  << "not \"" << f.text << "\"\n";
        return false;
      }
      (m->*f.set)(v);
    }
    return true;
  }
};

int List(Client& c) {
  v1::ClientSettingList l;
  if (int rc = c.ListAll(&v1::ClientSettingService::Stub::ListClientSettings, &l)) return rc;
  Table t{{"NAME", "PRIORITY", "POLICY_POLL", "INVENTORY", "HEARTBEAT", "SPLAY", "APPROVAL",
           "DEPLOYED_TO", "DEVICES"},
          {}};
  for (const auto& x : l.settings()) {
    t.rows.push_back({x.name(), absl::StrCat(x.priority()),
                      SettingValue(x.has_policy_poll_seconds(), x.policy_poll_seconds()),
                      SettingValue(x.has_inventory_seconds(), x.inventory_seconds()),
                      SettingValue(x.has_heartbeat_seconds(), x.heartbeat_seconds()),
                      SettingValue(x.has_splay_seconds(), x.splay_seconds()),
                      x.approval_mode().empty() ? "-" : x.approval_mode(),
                      x.builtin() ? "(every client)" : absl::StrJoin(x.deployed_to(), ","),
                      absl::StrCat(x.devices())});
  }
  Show(c.options(), l, l.next_page_token(), t);
  return kOk;
}

void ShowSetting(const Options& o, const v1::ClientSetting& x) {
  std::vector<std::vector<std::string>> fields{
      {"name", x.name()},
      {"description", x.description()},
      {"priority", absl::StrCat(x.priority())},
      {"policy poll", SettingValue(x.has_policy_poll_seconds(), x.policy_poll_seconds())},
      {"inventory every", SettingValue(x.has_inventory_seconds(), x.inventory_seconds())},
      {"heartbeat every", SettingValue(x.has_heartbeat_seconds(), x.heartbeat_seconds())},
      {"splay", SettingValue(x.has_splay_seconds(), x.splay_seconds())}};
  if (x.builtin()) fields.push_back({"approval mode", x.approval_mode()});
  fields.push_back({"scopes", absl::StrJoin(x.scopes(), ", ")});
  fields.push_back({"deployed to", x.builtin() ? std::string("(every client)")
                                               : absl::StrJoin(x.deployed_to(), ", ")});
  fields.push_back({"devices", absl::StrCat(x.devices())});
  fields.push_back({"built in", Bool(x.builtin())});
  fields.push_back({"created by", x.created_by()});
  fields.push_back({"updated", x.updated_at()});
  Describe(o, x, fields);
}

Action Create(CLI::App* cmd) {
  struct State {
    std::string name, description;
    std::vector<std::string> scopes;
    SettingFlags flags;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "Its name")->required();
  cmd->add_option("--description", st->description, "A description");
  cmd->add_option("--scope", st->scopes, "Security scope (repeatable; Default)");
  st->flags.Declare(cmd, "1 (highest) to 9999 (default: after the others)");
  return [st](Client& c) {
    v1::ClientSetting req;
    req.set_name(st->name);
    req.set_description(st->description);
    req.set_priority(st->flags.priority);
    for (const auto& s : st->scopes) req.add_scopes(s);
    if (!st->flags.ApplyTo(&req)) return kUsage;
    v1::ClientSetting out;
    if (int rc = c.Call(&v1::ClientSettingService::Stub::CreateClientSetting, req, &out)) {
      return rc;
    }
    PrintDone(c.options(),
              absl::StrCat("client setting \"", out.name(), "\" created (priority ", out.priority(),
                           "; deploy it to a collection to use it)"),
              out);
    return kOk;
  };
}

Action Update(CLI::App* cmd) {
  struct State {
    std::string name, description, approval;
    bool description_set = false;
    std::vector<std::string> clear;
    SettingFlags flags;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "Its name")->required();
  cmd->add_option("--description", st->description, "A new description")
      ->each([st](const std::string&) { st->description_set = true; });
  st->flags.Declare(cmd, "1 (highest) to 9999");
  cmd->add_option("--approval-mode", st->approval,
                  "Default Client Settings: token, manual or auto (registration)")
      ->check(CLI::IsMember({"token", "manual", "auto"}));
  cmd->add_option("--clear", st->clear,
                  "Leave a field to others again (policy-poll, inventory, heartbeat, splay; "
                  "repeatable)")
      ->check(CLI::IsMember({"policy-poll", "inventory", "heartbeat", "splay"}));
  return [st](Client& c) {
    v1::UpdateClientSettingRequest req;
    req.set_name(st->name);
    if (st->description_set) req.set_description(st->description);
    if (st->flags.priority > 0) req.set_priority(st->flags.priority);
    if (!st->approval.empty()) req.set_approval_mode(st->approval);
    if (!st->flags.ApplyTo(&req)) return kUsage;
    for (const auto& f : st->clear) {
      req.add_clear(f == "policy-poll" ? "policy_poll_seconds" : f + "_seconds");
    }
    v1::ClientSetting out;
    if (int rc = c.Call(&v1::ClientSettingService::Stub::UpdateClientSetting, req, &out)) {
      return rc;
    }
    PrintDone(c.options(), absl::StrCat("client setting \"", out.name(), "\" updated"), out);
    return kOk;
  };
}

std::function<Action(CLI::App*)> Deployment(bool deploy) {
  return [deploy](CLI::App* cmd) -> Action {
    struct State {
      std::string name, collection;
    };
    auto st = std::make_shared<State>();
    cmd->add_option("name", st->name, "The custom client setting")->required();
    cmd->add_option("--collection", st->collection, "The collection")->required();
    return [st, deploy](Client& c) {
      v1::DeployClientSettingRequest req;
      req.set_name(st->name);
      req.set_collection(st->collection);
      v1::ClientSetting out;
      if (int rc = c.Call(deploy ? &v1::ClientSettingService::Stub::DeployClientSetting
                                 : &v1::ClientSettingService::Stub::UndeployClientSetting,
                          req, &out)) {
        return rc;
      }
      PrintDone(c.options(),
                absl::StrCat("client setting \"", out.name(), "\" ",
                             deploy ? "deployed to \"" : "no longer deployed to \"", st->collection,
                             "\"; management points tell the agents concerned"),
                out);
      return kOk;
    };
  };
}

}  // namespace

std::vector<Command> ClientSettingCommands() {
  const std::string names = "get client-settings --all";
  return {
      {"get",
       "client-settings",
       {"client-setting"},
       "Client settings: the default and custom ones, their deployments",
       [](CLI::App*) -> Action { return List; }},
      {"describe",
       "client-setting",
       {},
       "One client setting",
       OnName(&v1::ClientSettingService::Stub::GetClientSetting,
              std::function<void(const Options&, const v1::ClientSetting&)>(ShowSetting)),
       names},
      {"create",
       "client-setting",
       {},
       "A custom client setting (deploy it to a collection)",
       Create},
      {"update", "client-setting", {}, "Change a client setting's values", Update, names},
      {"delete",
       "client-setting",
       {},
       "A custom client setting and its deployments",
       DeleteByName(&v1::ClientSettingService::Stub::DeleteClientSetting, "client-setting"),
       names},
      {"deploy",
       "client-setting",
       {},
       "Deploy a custom client setting to a collection (--collection)",
       Deployment(true),
       names},
      {"undeploy",
       "client-setting",
       {},
       "Take a custom client setting's deployment away",
       Deployment(false),
       names},
  };
}

}  // namespace strata::ctl
