// stratactl get hierarchy-settings, set hierarchy-setting NAME VALUE,
// reset hierarchy-setting NAME

#include <memory>

#include "absl/strings/str_cat.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/hierarchy_settings.grpc.pb.h"

namespace strata::ctl {
namespace {

void Done(const Options& o, const v1::HierarchySetting& s) {
  PrintDone(o,
            absl::StrCat("hierarchy setting ", s.name(), " = ", s.value(),
                         s.is_set() ? "" : " (the default)", "; it reaches every site"),
            s);
}

Action Set(CLI::App* cmd) {
  auto req = std::make_shared<v1::HierarchySetting>();
  cmd->add_option("name", *req->mutable_name(),
                  "The setting (get hierarchy-settings), or SITE/name for one site's")
      ->required();
  cmd->add_option("value", *req->mutable_value(), "Its value")->required();
  return [req](Client& c) {
    v1::HierarchySetting out;
    if (int rc = c.Call(&v1::HierarchySettingService::Stub::SetHierarchySetting, *req, &out))
      return rc;
    Done(c.options(), out);
    return kOk;
  };
}

}  // namespace

std::vector<Command> HierarchySettingCommands() {
  return {
      {"get",
       "hierarchy-settings",
       {"hierarchy-setting"},
       "Hierarchy-wide settings: value, default, what each does",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::HierarchySettingList l;
           if (int rc = c.ListAll(&v1::HierarchySettingService::Stub::ListHierarchySettings, &l))
             return rc;
           Table t{{"NAME", "VALUE", "DEFAULT", "SET", "DESCRIPTION"}, {}};
           for (const auto& s : l.settings())
             t.rows.push_back(
                 {s.name(), s.value(), s.default_value(), Bool(s.is_set()), s.description()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"set",
       "hierarchy-setting",
       {},
       "A hierarchy setting's value (NAME VALUE)",
       Set,
       "get hierarchy-settings --all"},
      {"reset",
       "hierarchy-setting",
       {},
       "A hierarchy setting, back to its default",
       OnName<v1::HierarchySettingService::Stub, v1::HierarchySetting>(
           &v1::HierarchySettingService::Stub::ResetHierarchySetting, Done),
       "get hierarchy-settings --all"},
  };
}

}  // namespace strata::ctl
