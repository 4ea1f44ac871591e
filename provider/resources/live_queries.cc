// Live queries (proto/strata/v1/admin/live_queries.proto, Configuration
// Manager's CMPivot): a query of the collection query language, with the
// columns to return, asked of a collection's members or one device and
// answered by each client from its live state. A query is global data; the
// devices it reaches are resolved at their primaries
// (live_query_assignments); each answer is site data up to the CAS
// (live_query_results), where WatchLiveQuery streams the rows as they
// arrive with the counts answered / failed / pending / offline (offline:
// holding no channel to an MP, client_presence). Every query and every
// refused one is audited with its text and target.

#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/collections/query.h"
#include "common/inventory/report_check.h"
#include "provider/input.h"
#include "provider/listing.h"
#include "provider/rbac.h"
#include "provider/resource.h"
#include "provider/resources/collections.h"
#include "strata/v1/admin/live_queries.grpc.pb.h"

namespace strata::provider {
namespace {

constexpr Permission kRun{"query.run", "Ask devices live queries"};
constexpr Permission kRead{"query.read", "Read live queries and their answers"};

constexpr int kDefaultRowsPerDevice = 100;
constexpr int kMaxRowsPerDevice = 1000;
constexpr int64_t kDefaultExpirySeconds = 3600;
constexpr int64_t kMaxExpirySeconds = 86400;
constexpr int kDefaultTimeLimitMs = 10000;
constexpr int kMaxTimeLimitMs = 60000;
constexpr int64_t kDefaultWaitSeconds = 30;
constexpr int64_t kMaxWaitSeconds = 3600;
constexpr int kDefaultResultRows = 20000;
constexpr int kMaxResultRows = 100000;
constexpr absl::Duration kWatchPoll = absl::Milliseconds(200);

std::string QuerySelect() {
  return absl::StrCat(
      "SELECT q.id::text, q.query, q.select_fields::text, q.collection, "
      "coalesce(q.device_id::text, ''), coalesce((SELECT v.name FROM devices v WHERE v.id = "
      "q.device_id), ''), q.created_by, ",
      Ts("q.created_at"), ", ", Ts("q.expires_at"),
      ", (SELECT count(*) FROM collection_members m WHERE m.collection = q.collection AND "
      "(q.device_id IS NULL OR m.device_id = q.device_id)), q.max_rows, q.time_limit_ms FROM "
      "live_queries q");
}

void FillQuery(const Result& r, size_t i, v1::LiveQuery* q) {
  q->set_id(r.GetString(i, 0));
  q->set_query(r.GetString(i, 1));
  for (auto& f : store::ParseTextArray(r.GetString(i, 2))) q->add_select(std::move(f));
  q->set_collection(r.GetString(i, 3));
  q->set_device_id(r.GetString(i, 4));
  q->set_device_name(r.GetString(i, 5));
  q->set_created_by(r.GetString(i, 6));
  q->set_created_at(r.GetString(i, 7));
  q->set_expires_at(r.GetString(i, 8));
  q->set_targeted(r.GetInt(i, 9));
  q->set_max_rows_per_device(static_cast<int32_t>(r.GetInt(i, 10)));
  q->set_time_limit_ms(static_cast<int32_t>(r.GetInt(i, 11)));
}

absl::Status ReadQuery(Call& call, const std::string& id, v1::LiveQuery* out) {
  if (!inventory::IsUuid(id))
    return absl::InvalidArgumentError(absl::StrCat("\"", id, "\" is not a live query id (a UUID)"));
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat(QuerySelect(), " WHERE q.id = $1::uuid"), {id}));
  if (r.empty()) return absl::NotFoundError(absl::StrCat("no live query ", id));
  out->Clear();
  FillQuery(r, 0, out);
  return absl::OkStatus();
}

// The devices the query reached or that answered, the caller's only, as
// "FROM ... WHERE ..." over t (device), v (devices), r (its answer, or
// NULLs), p (its presence, or NULLs); $1 is the query's id.
std::string Reached(const Caller& caller, store::Params& params) {
  return absl::StrCat(
      " FROM (SELECT device_id FROM live_query_assignments WHERE query = $1::uuid UNION SELECT "
      "device_id FROM live_query_results WHERE query = $1::uuid) t JOIN devices v ON v.id = "
      "t.device_id LEFT JOIN live_query_results r ON r.query = $1::uuid AND r.device_id = "
      "t.device_id LEFT JOIN client_presence p ON p.device_id = t.device_id WHERE ",
      VisibleDevice(caller, "v", params));
}

constexpr char kDeviceState[] =
    "coalesce(r.state, CASE WHEN coalesce(p.online, false) THEN 'pending' ELSE 'offline' END)";

absl::Status Counts(Call& call, const std::string& id, v1::LiveQueryCounts* c) {
  store::Params params{id};
  const std::string from = Reached(call.caller, params);
  ASSIGN_OR_RETURN(Result r,
                   call.tx.Exec(absl::StrCat("SELECT count(*), count(*) FILTER (WHERE r.state = "
                                             "'answered'), count(*) FILTER (WHERE r.state IN "
                                             "('failed', 'too_costly')), count(*) FILTER (WHERE "
                                             "r.state IS NULL AND coalesce(p.online, false)), "
                                             "coalesce(sum(r.row_count), 0)",
                                             from),
                                params));
  c->set_targeted(r.GetInt(0, 0));
  c->set_answered(r.GetInt(0, 1));
  c->set_failed(r.GetInt(0, 2));
  c->set_pending(r.GetInt(0, 3));
  c->set_offline(c->targeted() - c->answered() - c->failed() - c->pending());
  c->set_rows(r.GetInt(0, 4));
  return absl::OkStatus();
}

// The rows of the answers of `devices` (all when empty), by device name,
// at most `max` (*cut then).
absl::Status Rows(Call& call, const std::string& id, const std::vector<std::string>& devices,
                  int max, google::protobuf::RepeatedPtrField<v1::LiveResultRow>* out, bool* cut) {
  store::Params params{id};
  std::string where =
      absl::StrCat("r.query = $1::uuid AND ", VisibleDevice(call.caller, "v", params));
  if (!devices.empty()) {
    params.push_back(store::TextArrayLiteral(devices));
    absl::StrAppend(&where, " AND r.device_id = ANY($", params.size(), "::uuid[])");
  }
  params.push_back(absl::StrCat(max + 1));
  ASSIGN_OR_RETURN(
      Result r,
      call.tx.Exec(absl::StrCat("SELECT v.name, r.site_code, (SELECT array_agg(x ORDER BY o) FROM "
                                "jsonb_array_elements_text(e.value) WITH ORDINALITY AS y(x, "
                                "o))::text FROM live_query_results r JOIN devices v ON v.id = "
                                "r.device_id, jsonb_array_elements(r.rows) WITH ORDINALITY AS "
                                "e(value, n) WHERE ",
                                where, " ORDER BY v.name, v.id, e.n LIMIT $", params.size()),
                   params));
  for (size_t i = 0; i < r.size(); ++i) {
    if (static_cast<int>(i) == max) {
      *cut = true;
      break;
    }
    auto* row = out->Add();
    row->set_device_name(r.GetString(i, 0));
    row->set_site_code(r.GetString(i, 1));
    if (!r.IsNull(i, 2))
      for (auto& v : store::ParseTextArray(r.GetString(i, 2))) row->add_values(std::move(v));
  }
  return absl::OkStatus();
}

class LiveQueryServiceImpl final : public v1::LiveQueryService::Service {
 public:
  explicit LiveQueryServiceImpl(CallCore& core) : core_(core) {}

  grpc::Status RunLiveQuery(grpc::ServerContext* ctx, const v1::RunLiveQueryRequest* req,
                            v1::LiveQuery* out) override {
    const std::string target = req->device().empty()
                                   ? absl::StrCat("collection \"", req->collection(), "\"")
                                   : absl::StrCat("device \"", req->device(), "\"");
    return core_.RunAudited(
        *ctx, __func__, kRun.name, "live query", Truncated(req->query(), 256),
        [&](Call& call) -> absl::Status {
          Transaction& tx = call.tx;
          const std::vector<std::string> select(req->select().begin(), req->select().end());
          RETURN_IF_ERROR(collections::CheckLiveQuery(req->query(), select).status());
          ASSIGN_OR_RETURN(Target to, ResolveTarget(call, req->collection(), req->device()));
          const int rows =
              req->max_rows_per_device() == 0 ? kDefaultRowsPerDevice : req->max_rows_per_device();
          if (rows < 1 || rows > kMaxRowsPerDevice)
            return absl::InvalidArgumentError(
                absl::StrCat("max_rows_per_device: 1 to ", kMaxRowsPerDevice, ", not ", rows));
          const int64_t expires =
              req->expires_in_seconds() == 0 ? kDefaultExpirySeconds : req->expires_in_seconds();
          if (expires < 60 || expires > kMaxExpirySeconds)
            return absl::InvalidArgumentError(absl::StrCat(
                "expires_in_seconds: 60 to ", kMaxExpirySeconds, " (a day), not ", expires));
          const int limit = req->time_limit_ms() == 0 ? kDefaultTimeLimitMs : req->time_limit_ms();
          if (limit < 100 || limit > kMaxTimeLimitMs)
            return absl::InvalidArgumentError(absl::StrCat(
                "time_limit_ms: 100 to ", kMaxTimeLimitMs, " (a minute), not ", limit));
          ASSIGN_OR_RETURN(
              Result made,
              tx.Exec("INSERT INTO live_queries (id, query, select_fields, collection, device_id, "
                      "max_rows, time_limit_ms, created_by, expires_at) VALUES "
                      "(gen_random_uuid(), $1, $2::text[], $3, nullif($4, '')::uuid, $5, $6, $7, "
                      "now() + $8 * interval '1 second') RETURNING id::text",
                      {req->query(), store::TextArrayLiteral(select), to.collection, to.device_id,
                       absl::StrCat(rows), absl::StrCat(limit), call.caller.name,
                       absl::StrCat(expires)}));
          RETURN_IF_ERROR(ReadQuery(call, made.GetString(0, 0), out));
          return call.Audit("run", "live query", out->id(),
                            Truncated(absl::StrCat("query \"", req->query(), "\" select ",
                                                   absl::StrJoin(select, ","), " on ", target, " (",
                                                   out->targeted(), " devices)"),
                                      8192));
        });
  }

  grpc::Status WatchLiveQuery(grpc::ServerContext* ctx, const v1::WatchLiveQueryRequest* req,
                              grpc::ServerWriter<v1::LiveQueryUpdate>* writer) override {
    const int64_t wait = req->wait_seconds() == 0 ? kDefaultWaitSeconds : req->wait_seconds();
    if (wait < 1 || wait > kMaxWaitSeconds)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("wait_seconds: 1 to ", kMaxWaitSeconds, ", not ", wait));
    const absl::Time until = absl::Now() + absl::Seconds(wait);
    std::set<std::string> sent;  // devices whose rows went out
    std::string last_counts;
    bool first = true;
    int64_t members = 0;  // of the target, as the site knows them
    while (true) {
      v1::LiveQueryUpdate update;
      std::vector<std::string> newly;
      grpc::Status st = core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
        update.Clear();
        newly.clear();
        v1::LiveQuery q;
        RETURN_IF_ERROR(ReadQuery(call, req->id(), &q));
        if (first) *update.mutable_columns() = q.select();
        members = q.targeted();
        RETURN_IF_ERROR(Counts(call, req->id(), update.mutable_counts()));
        // Answers that arrived since the last look (by device: answers
        // replicate in from several sites in any order): their ids first
        // (the primary key's index), then the new ones in full.
        ASSIGN_OR_RETURN(Result ids,
                         call.tx.Exec("SELECT device_id::text FROM live_query_results WHERE "
                                      "query = $1::uuid",
                                      {req->id()}));
        std::vector<std::string> arrived;
        for (size_t i = 0; i < ids.size(); ++i)
          if (!sent.count(ids.GetString(i, 0))) arrived.push_back(ids.GetString(i, 0));
        if (arrived.empty()) return absl::OkStatus();
        store::Params params{req->id(), store::TextArrayLiteral(arrived)};
        ASSIGN_OR_RETURN(
            Result answered,
            call.tx.Exec(absl::StrCat("SELECT r.device_id::text, v.name, r.site_code, r.state, "
                                      "r.detail, r.row_count, r.truncated, r.elapsed_ms FROM "
                                      "live_query_results r JOIN devices v ON v.id = "
                                      "r.device_id WHERE r.query = $1::uuid AND r.device_id = "
                                      "ANY($2::uuid[]) AND ",
                                      VisibleDevice(call.caller, "v", params)),
                         params));
        std::vector<std::string> fresh;
        for (size_t i = 0; i < answered.size(); ++i) {
          const std::string device = answered.GetString(i, 0);
          fresh.push_back(device);
          if (answered.GetString(i, 3) != "answered" || answered.GetBool(i, 6)) {
            auto* d = update.add_problems();
            d->set_device_id(device);
            d->set_device_name(answered.GetString(i, 1));
            d->set_site_code(answered.GetString(i, 2));
            d->set_state(answered.GetString(i, 3));
            d->set_detail(answered.GetString(i, 4));
            d->set_rows(answered.GetInt(i, 5));
            d->set_truncated(answered.GetBool(i, 6));
            d->set_elapsed_ms(answered.GetInt(i, 7));
          }
        }
        // The caller's devices go out; others are not looked at again (once
        // the transaction is through: a retried one starts over).
        newly = arrived;
        if (fresh.empty()) return absl::OkStatus();
        bool cut = false;
        return Rows(call, req->id(), fresh, kMaxResultRows, update.mutable_rows(), &cut);
      });
      if (!st.ok()) return st;
      sent.insert(newly.begin(), newly.end());
      const auto& c = update.counts();
      const bool over = absl::Now() >= until;
      // Done once every member of the target is accounted for (the query
      // reached it at its primary) and none online is left to answer.
      update.set_done((c.pending() == 0 && c.targeted() >= members) || over);
      const std::string counts = c.SerializeAsString();
      if (first || update.done() || update.rows_size() > 0 || update.problems_size() > 0 ||
          counts != last_counts) {
        if (!writer->Write(update)) return grpc::Status::OK;  // the admin went away
      }
      first = false;
      last_counts = counts;
      if (update.done() || ctx->IsCancelled()) return grpc::Status::OK;
      absl::SleepFor(kWatchPoll);
    }
  }

  grpc::Status GetLiveQuery(grpc::ServerContext* ctx, const v1::GetLiveQueryRequest* req,
                            v1::LiveQueryResults* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      const int max = req->max_rows() == 0 ? kDefaultResultRows : req->max_rows();
      if (max < 1 || max > kMaxResultRows)
        return absl::InvalidArgumentError(
            absl::StrCat("max_rows: 1 to ", kMaxResultRows, ", not ", max));
      RETURN_IF_ERROR(ReadQuery(call, req->id(), out->mutable_query()));
      RETURN_IF_ERROR(Counts(call, req->id(), out->mutable_counts()));
      bool cut = false;
      RETURN_IF_ERROR(Rows(call, req->id(), {}, max, out->mutable_rows(), &cut));
      out->set_rows_truncated(cut);
      store::Params params{req->id()};
      const std::string from = Reached(call.caller, params);
      ASSIGN_OR_RETURN(
          Result devices,
          call.tx.Exec(absl::StrCat("SELECT v.id::text, v.name, v.site_code, ", kDeviceState,
                                    ", coalesce(r.detail, ''), coalesce(r.row_count, 0), "
                                    "coalesce(r.truncated, false), coalesce(r.elapsed_ms, 0)",
                                    from, " ORDER BY 4, v.name, v.id LIMIT 20000"),
                       params));
      for (size_t i = 0; i < devices.size(); ++i) {
        auto* d = out->add_devices();
        d->set_device_id(devices.GetString(i, 0));
        d->set_device_name(devices.GetString(i, 1));
        d->set_site_code(devices.GetString(i, 2));
        d->set_state(devices.GetString(i, 3));
        d->set_detail(devices.GetString(i, 4));
        d->set_rows(devices.GetInt(i, 5));
        d->set_truncated(devices.GetBool(i, 6));
        d->set_elapsed_ms(devices.GetInt(i, 7));
      }
      return absl::OkStatus();
    });
  }

  grpc::Status ListLiveQueries(grpc::ServerContext* ctx, const v1::ListRequest* req,
                               v1::LiveQueryList* out) override {
    return core_.Run(*ctx, __func__, kRead.name, [&](Call& call) -> absl::Status {
      out->Clear();
      ListSpec spec;
      spec.select = QuerySelect();
      spec.filter_columns = {"q.query"};
      spec.order = {{"created", "q.created_at"}};
      spec.default_order = "q.created_at DESC";
      return ListPage(call.tx, *req, spec, {}, out,
                      [&](const Result& r, size_t i) { FillQuery(r, i, out->add_queries()); });
    });
  }

 private:
  CallCore& core_;
};

}  // namespace

Resource LiveQueriesResource() {
  return {"live_queries", {kRun, kRead}, [](const ResourceContext& c) {
            return std::make_unique<LiveQueryServiceImpl>(*c.core);
          }};
}

}  // namespace strata::provider
