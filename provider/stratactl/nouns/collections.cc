// stratactl get collections, get members NAME, describe / create / update /
// delete collection NAME

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/nouns/devices.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/collections.grpc.pb.h"

namespace strata::ctl {
namespace {

struct RuleFlags {
  std::vector<std::string> queries, includes, excludes, devices;

  // --query, --include, ... (create) or --add-query, ... (update).
  void Declare(CLI::App* cmd, const std::string& prefix) {
    cmd->add_option(absl::StrCat("--", prefix, "query"), queries,
                    "Query rule (repeatable), e.g. 'software.name = \"openssl\"'");
    cmd->add_option(absl::StrCat("--", prefix, "include"), includes,
                    "Include the members of a collection (repeatable)");
    cmd->add_option(absl::StrCat("--", prefix, "exclude"), excludes,
                    "Exclude the members of a collection (repeatable)");
    cmd->add_option(absl::StrCat("--", prefix, "device"), devices,
                    "A direct member, by device id (repeatable)");
  }

  void AddTo(google::protobuf::RepeatedPtrField<v1::CollectionRule>* rules) const {
    for (const auto& q : queries) {
      auto* r = rules->Add();
      r->set_kind("query");
      r->set_query(q);
    }
    for (const auto& k : includes) {
      auto* r = rules->Add();
      r->set_kind("include");
      r->set_collection(k);
    }
    for (const auto& k : excludes) {
      auto* r = rules->Add();
      r->set_kind("exclude");
      r->set_collection(k);
    }
    for (const auto& d : devices) {
      auto* r = rules->Add();
      r->set_kind("direct");
      r->set_device_id(d);
    }
  }
};

std::string RuleText(const v1::CollectionRule& r) {
  if (r.kind() == "query") return r.query();
  if (r.kind() == "direct") return r.device_id();
  return r.collection();
}

int List(Client& c) {
  v1::CollectionList l;
  if (int rc = c.ListAll(&v1::CollectionService::Stub::ListCollections, &l)) return rc;
  Table t{{"NAME", "MEMBERS", "LIMITING", "RULES", "SCOPES", "BUILTIN", "EVALUATED", "ERROR"}, {}};
  for (const auto& x : l.collections()) {
    t.rows.push_back({x.name(), absl::StrCat(x.members()), x.limiting(),
                      absl::StrCat(x.rules_size()), absl::StrJoin(x.scopes(), ","),
                      Bool(x.builtin()), x.evaluated_at(), x.evaluation_error()});
  }
  Show(c.options(), l, l.next_page_token(), t);
  return kOk;
}

Action Members(CLI::App* cmd) {
  auto name = std::make_shared<std::string>();
  cmd->add_option("collection", *name, "The collection")->required();
  return [name](Client& c) {
    v1::ListMembersRequest req;
    req.set_name(*name);
    *req.mutable_list() = c.List();
    v1::DeviceList l;
    if (int rc = c.Call(&v1::CollectionService::Stub::ListCollectionMembers, req, &l)) return rc;
    Show(c.options(), l, l.next_page_token(), DeviceTable(l));
    return kOk;
  };
}

void ShowCollection(const Options& o, const v1::Collection& x) {
  std::vector<std::vector<std::string>> fields{{"name", x.name()},
                                               {"comment", x.comment()},
                                               {"limiting", x.limiting()},
                                               {"scopes", absl::StrJoin(x.scopes(), ", ")},
                                               {"members", absl::StrCat(x.members())},
                                               {"built in", Bool(x.builtin())},
                                               {"created by", x.created_by()},
                                               {"evaluated", x.evaluated_at()},
                                               {"evaluation error", x.evaluation_error()}};
  for (const auto& r : x.rules()) {
    fields.push_back({absl::StrCat("rule ", r.name()), absl::StrCat(r.kind(), ": ", RuleText(r))});
  }
  Describe(o, x, fields);
}

Action Create(CLI::App* cmd) {
  struct State {
    std::string name, comment, limiting;
    std::vector<std::string> scopes;
    RuleFlags rules;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "Its name")->required();
  cmd->add_option("--limiting", st->limiting, "The limiting collection (All Systems)");
  cmd->add_option("--comment", st->comment, "A comment");
  cmd->add_option("--scope", st->scopes, "Security scope (repeatable; Default)");
  st->rules.Declare(cmd, "");
  return [st](Client& c) {
    v1::Collection req;
    req.set_name(st->name);
    req.set_comment(st->comment);
    req.set_limiting(st->limiting);
    for (const auto& s : st->scopes) req.add_scopes(s);
    st->rules.AddTo(req.mutable_rules());
    v1::Collection out;
    if (int rc = c.Call(&v1::CollectionService::Stub::CreateCollection, req, &out)) {
      PointAt(c.last_error(), st->rules.queries);
      return rc;
    }
    PrintDone(c.options(),
              absl::StrCat("collection \"", out.name(), "\" created (", out.rules_size(),
                           " rules; members appear as the primaries evaluate it)"),
              out);
    return kOk;
  };
}

Action Update(CLI::App* cmd) {
  struct State {
    std::string name, comment;
    bool comment_set = false;
    std::vector<std::string> remove_rules;
    RuleFlags rules;
  };
  auto st = std::make_shared<State>();
  cmd->add_option("name", st->name, "Its name")->required();
  cmd->add_option("--comment", st->comment, "A new comment")->each([st](const std::string&) {
    st->comment_set = true;
  });
  st->rules.Declare(cmd, "add-");
  cmd->add_option("--remove-rule", st->remove_rules, "A rule to remove, by name (repeatable)");
  return [st](Client& c) {
    v1::UpdateCollectionRequest req;
    req.set_name(st->name);
    if (st->comment_set) req.set_comment(st->comment);
    st->rules.AddTo(req.mutable_add_rules());
    for (const auto& r : st->remove_rules) req.add_remove_rules(r);
    v1::Collection out;
    if (int rc = c.Call(&v1::CollectionService::Stub::UpdateCollection, req, &out)) {
      // Added rules are named after the ones the collection has: no index to map.
      if (st->rules.queries.size() == 1) PointAt(c.last_error(), st->rules.queries);
      return rc;
    }
    PrintDone(
        c.options(),
        absl::StrCat("collection \"", out.name(), "\" updated (", out.rules_size(), " rules)"),
        out);
    return kOk;
  };
}

}  // namespace

std::vector<Command> CollectionCommands() {
  const std::string names = "get collections --all";
  return {
      {"get",
       "collections",
       {"collection"},
       "Collections: members, rules, last evaluation",
       [](CLI::App*) -> Action { return List; }},
      {"get", "members", {}, "The members of a collection (get members NAME)", Members, names},
      {"describe",
       "collection",
       {},
       "One collection and its rules",
       OnName(&v1::CollectionService::Stub::GetCollection,
              std::function<void(const Options&, const v1::Collection&)>(ShowCollection)),
       names},
      {"create",
       "collection",
       {},
       "A collection: query, include, exclude and direct rules",
       Create},
      {"update",
       "collection",
       {},
       "Add or remove a collection's rules, change its comment",
       Update,
       names},
      {"delete",
       "collection",
       {},
       "A collection nothing else uses",
       DeleteByName(&v1::CollectionService::Stub::DeleteCollection, "collection"),
       names},
  };
}

}  // namespace strata::ctl
