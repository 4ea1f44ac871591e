#include "common/replication/migrations.h"

namespace strata::replication {

extern const EmbeddedFile kMigrations[];
extern const int kMigrationsCount;

absl::Status ApplyReplicationMigrations(store::Connection& conn) {
  return store::ApplyMigrations(conn, "replication", kMigrations, kMigrationsCount);
}

}  // namespace strata::replication
