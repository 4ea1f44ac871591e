// stratactl create|update runbook (a body file and flags, or --file with
// the whole definition: a draft), publish runbook [--version N] (a
// rollback), get runbooks, describe runbook [--version N] [--versions],
// delete runbook

#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "provider/stratactl/command.h"
#include "provider/stratactl/nouns/scripts.h"
#include "provider/stratactl/output.h"
#include "strata/v1/admin/runbooks.grpc.pb.h"

namespace strata::ctl {
namespace {

struct RunbookFlags {
  std::string file, body_file, interpreter, description, run_as, timeout, on_worker_lost;
  int max_attempts = 0;
  bool resumable = false;
  std::vector<std::string> params, scopes, tags, assets;

  void Declare(CLI::App* cmd) {
    cmd->add_option("--file", file,
                    "The whole runbook as JSON (strata.v1.Runbook: definition, tags, ...)");
    cmd->add_option("--body", body_file, "The runbook's body: a file (at most 256 KiB)");
    cmd->add_option("--interpreter", interpreter, "bash (default), sh or python3")
        ->check(CLI::IsMember({"bash", "sh", "python3"}));
    cmd->add_option("--description", description, "What it does");
    cmd->add_option("--tag", tags, "A tag (repeatable, at most 16)");
    cmd->add_option("--timeout", timeout,
                    "A job is killed with its children after this long: 3600, 90s, 10m, 2h "
                    "(default 1h, at most 7d)");
    cmd->add_option("--run-as", run_as, "A local user to run as (default: root)");
    cmd->add_option("--on-worker-lost", on_worker_lost,
                    "A job whose worker is lost mid-job (its lease lapsed): retry on another "
                    "worker (default) or fail")
        ->check(CLI::IsMember({"retry", "fail"}));
    cmd->add_option("--max-attempts", max_attempts,
                    "Attempts in all when retrying (default 3, at most 10)")
        ->check(CLI::Range(1, 10));
    cmd->add_option(
        "--param", params,
        "A typed parameter, passed as the environment variable of its name: "
        "NAME[:string|int|enum][:required][:default=V][:min=N][:max=N][:min-length=N]"
        "[:max-length=N][:allowed=A|B][:regex=RE] (regex= last); repeatable, at most 10");
    cmd->add_flag("--resumable", resumable,
                  "Its jobs can be suspended and resumed (suspend job, resume job): a job may "
                  "keep its state in the file $STRATA_CHECKPOINT_FILE names (at most 64 KiB), "
                  "which the attempt that resumes it (or takes over from a lost worker) finds "
                  "there");
    cmd->add_option("--scope", scopes, "Security scopes (default: Default); repeatable");
    cmd->add_option("--asset", assets,
                    "An asset its jobs receive (get assets); repeatable, at most 16");
  }

  std::string Build(const std::string& name, v1::Runbook* r) const {
    if (!file.empty()) {
      std::string text;
      if (!ReadWhole(file, &text)) return absl::StrCat("cannot read ", file);
      auto st = google::protobuf::util::JsonStringToMessage(text, r);
      if (!st.ok()) return absl::StrCat(file, ": ", st.ToString());
      if (!r->name().empty() && r->name() != name)
        return absl::StrCat(file, " names runbook \"", r->name(), "\", not \"", name, "\"");
      r->set_name(name);
      return "";
    }
    if (body_file.empty()) return "--body FILE (or --file with the whole runbook) is required";
    v1::RunbookDefinition* d = r->mutable_definition();
    if (!ReadWhole(body_file, d->mutable_body())) return absl::StrCat("cannot read ", body_file);
    r->set_name(name);
    r->set_description(description);
    for (const auto& t : tags) r->add_tags(t);
    for (const auto& x : scopes) r->add_scopes(x);
    d->set_interpreter(interpreter);
    d->set_run_as(run_as);
    d->set_on_worker_lost(on_worker_lost);
    d->set_max_attempts(max_attempts);
    d->set_resumable(resumable);
    if (!timeout.empty()) {
      const int64_t t = ParseDuration(timeout);
      if (t <= 0) return absl::StrCat("--timeout ", timeout, ": seconds, or 90s, 10m, 2h, 1d");
      d->set_timeout_seconds(t);
    }
    for (const auto& spec : params)
      if (std::string err = ParseParam(spec, d->add_parameters()); !err.empty()) return err;
    for (const auto& a : assets) d->add_assets(a);
    return "";
  }
};

std::string Versions(const v1::Runbook& r) {
  return absl::StrCat(
      r.published_version() == 0 ? std::string("unpublished")
                                 : absl::StrCat("v", r.published_version(), " published"),
      r.draft_version() == 0 ? std::string() : absl::StrCat(", v", r.draft_version(), " draft"));
}

Action SaveRunbook(CLI::App* cmd, bool create) {
  auto name = std::make_shared<std::string>();
  auto flags = std::make_shared<RunbookFlags>();
  cmd->add_option("name", *name, "The runbook's name")->required();
  flags->Declare(cmd);
  ExcludesOthers(cmd, cmd->get_option("--file"));
  return [name, flags, create](Client& c) {
    v1::Runbook req, out;
    if (std::string err = flags->Build(*name, &req); !err.empty()) {
      std::cerr << "stratactl: " << err << "\n";
      return kUsage;
    }
    auto method = create ? &v1::RunbookService::Stub::CreateRunbook
                         : &v1::RunbookService::Stub::UpdateRunbook;
    if (int rc = c.Call(method, req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("runbook \"", out.name(), "\": draft version ", out.draft_version(),
                           " saved (sha256 ", out.draft().sha256(),
                           "); jobs run it once published: stratactl publish runbook ", out.name()),
              out);
    return kOk;
  };
}

Action Publish(CLI::App* cmd) {
  auto req = std::make_shared<v1::PublishRunbookRequest>();
  auto version = std::make_shared<int>(0);
  cmd->add_option("name", *req->mutable_name(), "The runbook")->required();
  cmd->add_option("--version", *version,
                  "Make this earlier version the published one again (a rollback); without "
                  "it, the draft is published");
  cmd->add_option("--sha256", *req->mutable_sha256(),
                  "The body's hash you read (describe runbook): refused if it differs");
  return [req, version](Client& c) {
    req->set_version(*version);
    v1::Runbook out;
    if (int rc = c.Call(&v1::RunbookService::Stub::PublishRunbook, *req, &out)) return rc;
    PrintDone(c.options(),
              absl::StrCat("runbook \"", out.name(), "\": version ", out.published_version(),
                           " published (sha256 ", out.definition().sha256(), ")"),
              out);
    return kOk;
  };
}

void AddDefinition(const std::string& prefix, const v1::RunbookDefinition& d,
                   std::vector<std::vector<std::string>>* fields, bool body) {
  if (d.version() == 0) return;
  fields->push_back({prefix + "version", absl::StrCat(d.version())});
  fields->push_back({prefix + "sha256", d.sha256()});
  fields->push_back({prefix + "interpreter", d.interpreter()});
  fields->push_back({prefix + "timeout", Duration(d.timeout_seconds())});
  fields->push_back({prefix + "run as", d.run_as().empty() ? "root" : d.run_as()});
  fields->push_back({prefix + "on worker lost",
                     absl::StrCat(d.on_worker_lost(), " (", d.max_attempts(), " attempts)")});
  fields->push_back({prefix + "resumable", d.resumable() ? "yes (suspend job, resume job)" : "no"});
  fields->push_back({prefix + "author", absl::StrCat(d.author(), " at ", d.created_at())});
  if (!d.published_by().empty())
    fields->push_back(
        {prefix + "published", absl::StrCat("by ", d.published_by(), " at ", d.published_at())});
  for (const auto& p : d.parameters())
    fields->push_back({prefix + "parameter " + p.name(), ParameterRules(p)});
  if (d.assets_size() > 0) fields->push_back({prefix + "assets", absl::StrJoin(d.assets(), ", ")});
  if (body) fields->push_back({prefix + "body", d.body()});
}

Action DescribeRunbook(CLI::App* cmd) {
  auto req = std::make_shared<v1::GetRunbookRequest>();
  auto version = std::make_shared<int>(0);
  auto versions = std::make_shared<bool>(false);
  cmd->add_option("name", *req->mutable_name(), "The runbook")->required();
  cmd->add_option("--version", *version, "Show this version's definition");
  cmd->add_flag("--versions", *versions, "List every version too");
  return [req, version, versions](Client& c) {
    req->set_version(*version);
    req->set_versions(*versions);
    v1::Runbook r;
    if (int rc = c.Call(&v1::RunbookService::Stub::GetRunbook, *req, &r)) return rc;
    std::vector<std::vector<std::string>> fields{{"name", r.name()},
                                                 {"description", r.description()},
                                                 {"versions", Versions(r)},
                                                 {"tags", absl::StrJoin(r.tags(), ", ")},
                                                 {"scopes", absl::StrJoin(r.scopes(), ", ")},
                                                 {"updated", r.updated_at()}};
    AddDefinition(req->version() > 0 ? "" : "published ", r.definition(), &fields, true);
    if (req->version() == 0) AddDefinition("draft ", r.draft(), &fields, true);
    for (const auto& v : r.versions())
      fields.push_back(
          {absl::StrCat("v", v.version()),
           absl::StrCat(v.sha256().substr(0, 16), " by ", v.author(), " at ", v.created_at(),
                        v.published_by().empty() ? "" : ", published by ", v.published_by())});
    Describe(c.options(), r, fields);
    return kOk;
  };
}

}  // namespace

std::vector<Command> RunbookCommands() {
  const std::string names = "get runbooks --all";
  return {
      {"get",
       "runbooks",
       {"runbook"},
       "Runbooks, their published and draft versions",
       [](CLI::App*) -> Action {
         return [](Client& c) {
           v1::RunbookList l;
           if (int rc = c.ListAll(&v1::RunbookService::Stub::ListRunbooks, &l)) return rc;
           Table t{{"NAME", "VERSIONS", "TAGS", "UPDATED"}, {}};
           for (const auto& r : l.runbooks())
             t.rows.push_back(
                 {r.name(), Versions(r), absl::StrJoin(r.tags(), ","), r.updated_at()});
           Show(c.options(), l, l.next_page_token(), t);
           return kOk;
         };
       }},
      {"describe",
       "runbook",
       {},
       "A runbook, its versions, parameters and body",
       DescribeRunbook,
       names},
      {"create",
       "runbook",
       {},
       "A runbook (--body FILE, or --file with the whole runbook): draft version 1",
       [](CLI::App* cmd) { return SaveRunbook(cmd, true); }},
      {"update",
       "runbook",
       {},
       "A runbook's definition: a new draft (jobs run the published version until it is "
       "published)",
       [](CLI::App* cmd) { return SaveRunbook(cmd, false); },
       names},
      {"publish",
       "runbook",
       {},
       "A runbook's draft, or (--version) an earlier version again",
       Publish,
       names},
      {"delete",
       "runbook",
       {},
       "A runbook and its versions (jobs keep their copy)",
       DeleteByName(&v1::RunbookService::Stub::DeleteRunbook, "runbook"),
       names},
  };
}

}  // namespace strata::ctl
