#pragma once

// Reading a database's changes from its write-ahead log: a logical
// replication connection (libpq with replication=database; libpqxx has no
// replication API, so this is the one place that uses libpq directly)
// streaming a logical slot's messages, and the decoding of the pgoutput
// plugin's messages into events.
//
// A WalStream is used by one thread at a time. Decoding needs no
// connection.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace strata::store {

// A WAL position (PostgreSQL's pg_lsn: "16/B374D848" as text).
using Lsn = uint64_t;
std::string LsnToString(Lsn lsn);
absl::StatusOr<Lsn> ParseLsn(std::string_view text);

struct CreatedSlot {
  Lsn consistent_point = 0;  // the stream starts with the first commit after it
  std::string snapshot;      // exported snapshot name (empty unless asked for)
};

// One message of the stream: a pgoutput message and where it sits in the WAL.
struct WalMessage {
  Lsn start = 0;
  std::string data;
};

class WalStream {
 public:
  // Opens a replication connection to the database `conninfo` names (the
  // role needs the REPLICATION attribute). Text values arrive in the ISO
  // date style, in UTC, with floats exact (DateStyle, TimeZone and
  // extra_float_digits are set on the connection).
  static absl::StatusOr<std::unique_ptr<WalStream>> Open(const std::string& conninfo);
  ~WalStream();
  WalStream(const WalStream&) = delete;
  WalStream& operator=(const WalStream&) = delete;

  // Creates a logical slot for the pgoutput plugin. With `export_snapshot`
  // the snapshot of its consistent point can be imported by another
  // connection (SET TRANSACTION SNAPSHOT) until the next command on this
  // one: reading it and then streaming from the consistent point misses
  // nothing and repeats nothing. A `temporary` slot goes with the
  // connection. AlreadyExists if the slot exists.
  absl::StatusOr<CreatedSlot> CreateSlot(const std::string& slot, bool export_snapshot,
                                         bool temporary = false);

  // Starts streaming `slot` from `from` (0: where the slot was confirmed)
  // with the changes of `publications`. The connection is then in streaming
  // mode until it closes.
  absl::Status Start(const std::string& slot, Lsn from,
                     const std::vector<std::string>& publications);

  // The next message, waiting up to `timeout` (nullopt when none came).
  // Keepalives are answered here. Unavailable when the connection ends.
  absl::StatusOr<std::optional<WalMessage>> Next(absl::Duration timeout);

  // Tells the server everything up to `flushed` is durably applied: the
  // slot's confirmed position moves there and WAL before it may go.
  absl::Status Confirm(Lsn flushed);

  // Reports the confirmed position again if nothing was said for a few
  // seconds (a walsender ends a silent stream after wal_sender_timeout).
  absl::Status KeepAlive();

  // The server's WAL end from its last message (0 before any).
  Lsn server_wal_end() const { return server_wal_end_; }

 private:
  struct Impl;
  explicit WalStream(std::unique_ptr<Impl> impl);
  absl::Status SendStatus(bool reply_requested);
  absl::StatusOr<std::optional<WalMessage>> Poll();

  std::unique_ptr<Impl> impl_;
  Lsn confirmed_ = 0;
  Lsn server_wal_end_ = 0;
  absl::Time last_status_ = absl::InfinitePast();
};

// pgoutput (protocol version 1) messages, decoded.
struct WalColumn {
  std::string name;
  uint32_t type = 0;  // pg_type oid
  bool key = false;   // part of the replica identity
};

struct WalRelation {
  uint32_t id = 0;
  std::string schema;
  std::string name;
  std::vector<WalColumn> columns;
};

struct WalValue {
  enum Kind : char { kNull = 'n', kUnchangedToast = 'u', kText = 't' };
  Kind kind = kNull;
  std::string text;
};
using WalTuple = std::vector<WalValue>;

struct WalEvent {
  enum Kind { kBegin, kCommit, kOrigin, kRelation, kInsert, kUpdate, kDelete, kTruncate, kOther };
  Kind kind = kOther;
  Lsn lsn = 0;                                // begin: the commit's position; commit: its end
  int64_t commit_unix_us = 0;                 // begin, commit
  uint32_t xid = 0;                           // begin
  std::string origin;                         // origin: the replication origin's name
  const WalRelation* relation = nullptr;      // insert, update, delete (owned by the decoder)
  std::optional<WalTuple> old_tuple;          // update (when the key changed), delete: key columns
  WalTuple new_tuple;                         // insert, update
  std::vector<const WalRelation*> truncated;  // truncate
};

// Decodes one message at a time; keeps the relations the stream described
// (a relation message precedes the first change of each table in a session
// and follows any change of its shape). InvalidArgument for a malformed
// message or a change naming an undescribed relation.
class PgOutputDecoder {
 public:
  absl::StatusOr<WalEvent> Decode(std::string_view message);
  const WalRelation* Find(uint32_t id) const;

 private:
  std::map<uint32_t, WalRelation> relations_;
};

}  // namespace strata::store
