#include "common/store/wal_stream.h"

#include <libpq-fe.h>
#include <poll.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/store/database.h"

namespace strata::store {
namespace {

// PostgreSQL's timestamps count microseconds from 2000-01-01.
constexpr int64_t kPostgresEpochUnixUs = 946684800LL * 1000000;
// How often the stream reports its position when nothing else asks (well
// within wal_sender_timeout, 60 s by default).
constexpr absl::Duration kStatusEvery = absl::Seconds(5);

int64_t NowPostgresUs() { return absl::ToUnixMicros(absl::Now()) - kPostgresEpochUnixUs; }

void PutInt64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// Reads big-endian integers and strings off a message, remembering the
// first overrun.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  uint64_t Int(int bytes) {
    if (!Need(bytes)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(data_[pos_ + i]);
    pos_ += bytes;
    return v;
  }
  char Byte() { return static_cast<char>(Int(1)); }
  std::string CString() {
    size_t end = data_.find('\0', pos_);
    if (end == std::string_view::npos) {
      ok_ = false;
      pos_ = data_.size();
      return {};
    }
    std::string s(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }
  std::string Bytes(size_t n) {
    if (!Need(n)) return {};
    std::string s(data_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  bool ok() const { return ok_; }
  bool done() const { return pos_ == data_.size(); }

 private:
  bool Need(size_t n) {
    if (!ok_ || data_.size() - pos_ < n) {
      ok_ = false;
      pos_ = data_.size();
      return false;
    }
    return true;
  }
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

absl::StatusOr<WalTuple> ReadTuple(Reader& r) {
  const int n = static_cast<int>(r.Int(2));
  WalTuple tuple;
  tuple.reserve(n);
  for (int i = 0; i < n && r.ok(); ++i) {
    WalValue v;
    char kind = r.Byte();
    switch (kind) {
      case 'n':
        v.kind = WalValue::kNull;
        break;
      case 'u':
        v.kind = WalValue::kUnchangedToast;
        break;
      case 't': {
        v.kind = WalValue::kText;
        const uint32_t len = static_cast<uint32_t>(r.Int(4));
        v.text = r.Bytes(len);
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("pgoutput: column value of unknown kind '", std::string(1, kind), "'"));
    }
    tuple.push_back(std::move(v));
  }
  if (!r.ok()) return absl::InvalidArgumentError("pgoutput: truncated tuple");
  return tuple;
}

std::string ConnError(PGconn* conn) {
  std::string msg = conn != nullptr ? PQerrorMessage(conn) : "out of memory";
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

}  // namespace

std::string LsnToString(Lsn lsn) {
  return absl::StrFormat("%X/%X", static_cast<uint32_t>(lsn >> 32), static_cast<uint32_t>(lsn));
}

absl::StatusOr<Lsn> ParseLsn(std::string_view text) {
  size_t slash = text.find('/');
  uint32_t hi = 0;
  uint32_t lo = 0;
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size() ||
      !absl::SimpleHexAtoi(absl::string_view(text.data(), slash), &hi) ||
      !absl::SimpleHexAtoi(absl::string_view(text.data() + slash + 1, text.size() - slash - 1),
                           &lo)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a WAL position: \"", absl::string_view(text.data(), text.size()), "\""));
  }
  return (static_cast<Lsn>(hi) << 32) | lo;
}

struct WalStream::Impl {
  PGconn* conn = nullptr;
  bool streaming = false;
  ~Impl() {
    if (conn != nullptr) PQfinish(conn);
  }
  // A command's result as a status (`expect` is the success status).
  absl::StatusOr<PGresult*> Command(const std::string& sql, ExecStatusType expect) {
    PGresult* res = PQexec(conn, sql.c_str());
    if (PQresultStatus(res) == expect) return res;
    // Copied before PQclear frees the result they point into.
    const char* field = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
    const std::string state = field != nullptr ? field : "XX000";
    std::string msg = res != nullptr && *PQresultErrorMessage(res) != '\0'
                          ? PQresultErrorMessage(res)
                          : ConnError(conn);
    PQclear(res);
    if (PQstatus(conn) != CONNECTION_OK) {
      return absl::UnavailableError(absl::StrCat("replication connection lost: ", msg));
    }
    if (state == "42710") return absl::AlreadyExistsError(msg);
    return StatusFromSqlState(state, msg);
  }
};

WalStream::WalStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WalStream::~WalStream() = default;

absl::StatusOr<std::unique_ptr<WalStream>> WalStream::Open(const std::string& conninfo) {
  // Later keywords win: the caller's conninfo, then what this stream needs.
  const std::string full = absl::StrCat(
      conninfo,
      " replication=database options='-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3'");
  auto impl = std::make_unique<Impl>();
  impl->conn = PQconnectdb(full.c_str());
  if (impl->conn == nullptr || PQstatus(impl->conn) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("cannot open a replication connection: ", ConnError(impl->conn)));
  }
  return std::unique_ptr<WalStream>(new WalStream(std::move(impl)));
}

absl::StatusOr<CreatedSlot> WalStream::CreateSlot(const std::string& slot, bool export_snapshot,
                                                  bool temporary) {
  ASSIGN_OR_RETURN(
      PGresult * res,
      impl_->Command(absl::StrCat("CREATE_REPLICATION_SLOT ", QuoteIdent(slot),
                                  temporary ? " TEMPORARY" : "", " LOGICAL pgoutput ",
                                  export_snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT"),
                     PGRES_TUPLES_OK));
  CreatedSlot out;
  absl::StatusOr<Lsn> point = ParseLsn(PQgetvalue(res, 0, 1));
  if (!PQgetisnull(res, 0, 2)) out.snapshot = PQgetvalue(res, 0, 2);
  PQclear(res);
  RETURN_IF_ERROR(point.status());
  out.consistent_point = *point;
  return out;
}

absl::Status WalStream::Start(const std::string& slot, Lsn from,
                              const std::vector<std::string>& publications) {
  std::vector<std::string> quoted;
  for (const auto& p : publications) quoted.push_back(QuoteIdent(p));
  const std::string sql = absl::StrCat("START_REPLICATION SLOT ", QuoteIdent(slot), " LOGICAL ",
                                       LsnToString(from), " (proto_version '1', publication_names ",
                                       QuoteLiteral(absl::StrJoin(quoted, ",")), ")");
  ASSIGN_OR_RETURN(PGresult * res, impl_->Command(sql, PGRES_COPY_BOTH));
  PQclear(res);
  impl_->streaming = true;
  confirmed_ = from;
  return absl::OkStatus();
}

absl::Status WalStream::SendStatus(bool reply_requested) {
  std::string msg = "r";
  PutInt64(msg, confirmed_);  // written
  PutInt64(msg, confirmed_);  // flushed
  PutInt64(msg, confirmed_);  // applied
  PutInt64(msg, static_cast<uint64_t>(NowPostgresUs()));
  msg.push_back(reply_requested ? 1 : 0);
  if (PQputCopyData(impl_->conn, msg.data(), static_cast<int>(msg.size())) != 1 ||
      PQflush(impl_->conn) != 0) {
    return absl::UnavailableError(
        absl::StrCat("replication connection lost: ", ConnError(impl_->conn)));
  }
  last_status_ = absl::Now();
  return absl::OkStatus();
}

absl::Status WalStream::Confirm(Lsn flushed) {
  if (!impl_->streaming) return absl::FailedPreconditionError("the stream has not started");
  if (flushed <= confirmed_) return absl::OkStatus();
  confirmed_ = flushed;
  return SendStatus(false);
}

absl::Status WalStream::KeepAlive() {
  if (!impl_->streaming) return absl::FailedPreconditionError("the stream has not started");
  if (absl::Now() - last_status_ < kStatusEvery) return absl::OkStatus();
  return SendStatus(false);
}

// One message already received by libpq, if any.
absl::StatusOr<std::optional<WalMessage>> WalStream::Poll() {
  while (true) {
    char* buf = nullptr;
    const int n = PQgetCopyData(impl_->conn, &buf, 1);
    if (n == 0) return std::nullopt;
    if (n < 0) {
      std::string why = n == -1 ? "the server ended the stream" : ConnError(impl_->conn);
      if (n == -1) {
        PGresult* res = PQgetResult(impl_->conn);
        if (res != nullptr && PQresultStatus(res) == PGRES_FATAL_ERROR) {
          why = PQresultErrorMessage(res);
        }
        PQclear(res);
      }
      impl_->streaming = false;
      return absl::UnavailableError(absl::StrCat("replication stream ended: ", why));
    }
    std::string_view data(buf, n);
    Reader r(data);
    const char type = r.Byte();
    if (type == 'w') {
      WalMessage m;
      m.start = r.Int(8);
      const Lsn end = r.Int(8);
      r.Int(8);  // send time
      if (!r.ok()) {
        PQfreemem(buf);
        return absl::InvalidArgumentError("replication stream: truncated data message");
      }
      server_wal_end_ = std::max(server_wal_end_, end);
      m.data.assign(data.substr(25));
      PQfreemem(buf);
      return m;
    }
    if (type == 'k') {
      const Lsn end = r.Int(8);
      r.Int(8);
      const bool reply = r.Byte() != 0;
      PQfreemem(buf);
      if (!r.ok()) return absl::InvalidArgumentError("replication stream: truncated keepalive");
      server_wal_end_ = std::max(server_wal_end_, end);
      if (reply) RETURN_IF_ERROR(SendStatus(false));
      continue;
    }
    PQfreemem(buf);
    return absl::InvalidArgumentError(
        absl::StrCat("replication stream: unknown message type '", std::string(1, type), "'"));
  }
}

absl::StatusOr<std::optional<WalMessage>> WalStream::Next(absl::Duration timeout) {
  if (!impl_->streaming) return absl::FailedPreconditionError("the stream has not started");
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    ASSIGN_OR_RETURN(std::optional<WalMessage> m, Poll());
    if (m.has_value()) return m;
    // What the socket already holds, without waiting: a reader draining a
    // backlog gets whole batches, not what one read happened to bring.
    if (PQconsumeInput(impl_->conn) == 0) {
      impl_->streaming = false;
      return absl::UnavailableError(
          absl::StrCat("replication connection lost: ", ConnError(impl_->conn)));
    }
    ASSIGN_OR_RETURN(m, Poll());
    if (m.has_value()) return m;
    if (absl::Now() - last_status_ >= kStatusEvery) RETURN_IF_ERROR(SendStatus(false));
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::nullopt;
    pollfd pfd{PQsocket(impl_->conn), POLLIN, 0};
    const int wait_ms =
        static_cast<int>(absl::ToInt64Milliseconds(std::min(left, kStatusEvery)) + 1);
    if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR) {
      return absl::UnavailableError(
          absl::StrCat("replication connection: poll: ", strerror(errno)));
    }
    if (PQconsumeInput(impl_->conn) == 0) {
      impl_->streaming = false;
      return absl::UnavailableError(
          absl::StrCat("replication connection lost: ", ConnError(impl_->conn)));
    }
  }
}

absl::StatusOr<WalEvent> PgOutputDecoder::Decode(std::string_view message) {
  Reader r(message);
  WalEvent e;
  const char type = r.Byte();
  auto relation = [&](uint32_t id) -> absl::StatusOr<const WalRelation*> {
    const WalRelation* rel = Find(id);
    if (rel == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("pgoutput: a change of relation ", id, " before its description"));
    }
    return rel;
  };
  switch (type) {
    case 'B':
      e.kind = WalEvent::kBegin;
      e.lsn = r.Int(8);
      e.commit_unix_us = static_cast<int64_t>(r.Int(8)) + kPostgresEpochUnixUs;
      e.xid = static_cast<uint32_t>(r.Int(4));
      break;
    case 'C':
      e.kind = WalEvent::kCommit;
      r.Byte();  // flags
      r.Int(8);  // the commit record's position
      e.lsn = r.Int(8);
      e.commit_unix_us = static_cast<int64_t>(r.Int(8)) + kPostgresEpochUnixUs;
      break;
    case 'O':
      e.kind = WalEvent::kOrigin;
      r.Int(8);
      e.origin = r.CString();
      break;
    case 'R': {
      e.kind = WalEvent::kRelation;
      WalRelation rel;
      rel.id = static_cast<uint32_t>(r.Int(4));
      rel.schema = r.CString();
      rel.name = r.CString();
      r.Byte();  // replica identity setting
      const int n = static_cast<int>(r.Int(2));
      for (int i = 0; i < n && r.ok(); ++i) {
        WalColumn c;
        c.key = (r.Byte() & 1) != 0;
        c.name = r.CString();
        c.type = static_cast<uint32_t>(r.Int(4));
        r.Int(4);  // type modifier
        rel.columns.push_back(std::move(c));
      }
      if (!r.ok()) break;
      const uint32_t id = rel.id;
      relations_[id] = std::move(rel);
      e.relation = &relations_[id];
      break;
    }
    case 'I': {
      e.kind = WalEvent::kInsert;
      ASSIGN_OR_RETURN(e.relation, relation(static_cast<uint32_t>(r.Int(4))));
      if (r.Byte() != 'N') return absl::InvalidArgumentError("pgoutput: insert without a tuple");
      ASSIGN_OR_RETURN(e.new_tuple, ReadTuple(r));
      break;
    }
    case 'U': {
      e.kind = WalEvent::kUpdate;
      ASSIGN_OR_RETURN(e.relation, relation(static_cast<uint32_t>(r.Int(4))));
      char part = r.Byte();
      if (part == 'K' || part == 'O') {
        ASSIGN_OR_RETURN(e.old_tuple, ReadTuple(r));
        part = r.Byte();
      }
      if (part != 'N') return absl::InvalidArgumentError("pgoutput: update without a new tuple");
      ASSIGN_OR_RETURN(e.new_tuple, ReadTuple(r));
      break;
    }
    case 'D': {
      e.kind = WalEvent::kDelete;
      ASSIGN_OR_RETURN(e.relation, relation(static_cast<uint32_t>(r.Int(4))));
      const char part = r.Byte();
      if (part != 'K' && part != 'O') {
        return absl::InvalidArgumentError("pgoutput: delete without the old key");
      }
      ASSIGN_OR_RETURN(e.old_tuple, ReadTuple(r));
      break;
    }
    case 'T': {
      e.kind = WalEvent::kTruncate;
      const int n = static_cast<int>(r.Int(4));
      r.Byte();  // options
      for (int i = 0; i < n && r.ok(); ++i) {
        ASSIGN_OR_RETURN(const WalRelation* rel, relation(static_cast<uint32_t>(r.Int(4))));
        e.truncated.push_back(rel);
      }
      break;
    }
    default:
      e.kind = WalEvent::kOther;  // types, logical messages: nothing to apply
      return e;
  }
  if (!r.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pgoutput: truncated '", std::string(1, type), "' message"));
  }
  if (e.kind == WalEvent::kRelation || e.kind == WalEvent::kInsert || e.kind == WalEvent::kUpdate ||
      e.kind == WalEvent::kDelete) {
    const size_t want = e.relation->columns.size();
    if (e.kind != WalEvent::kRelation &&
        ((e.kind != WalEvent::kDelete && e.new_tuple.size() != want) ||
         (e.old_tuple.has_value() && e.old_tuple->size() != want))) {
      return absl::InvalidArgumentError(absl::StrCat("pgoutput: a tuple of ", e.relation->name,
                                                     " with the wrong number of columns"));
    }
  }
  return e;
}

const WalRelation* PgOutputDecoder::Find(uint32_t id) const {
  auto it = relations_.find(id);
  return it == relations_.end() ? nullptr : &it->second;
}

}  // namespace strata::store
