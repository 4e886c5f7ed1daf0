// StateStore on PostgreSQL (libpq), for several coordinator replicas sharing
// one database (--state postgresql://...). Transactions commit without
// waiting for the server's WAL flush (synchronous_commit=off), so they are
// visible at once; Sync() commits one small synchronous transaction, which
// flushes the WAL up to it and so every commit before it, through the same
// group commit as SQLite. Leasing locks the unit it picks with FOR UPDATE
// SKIP LOCKED, so replicas never hand out one unit twice, and a round closes
// with a conditional update that only one replica's transaction can win.
#ifndef OPENFORCE_COORDINATOR_POSTGRES_STATE_STORE_H_
#define OPENFORCE_COORDINATOR_POSTGRES_STATE_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/state_store.h"

namespace openforce::coordinator {

// Connects to `conninfo` (a postgresql:// URI or libpq key=value string) and
// creates the schema if it is missing. Unavailable when the server cannot be
// reached.
[[nodiscard]] absl::StatusOr<std::unique_ptr<StateStore>>
OpenPostgresStateStore(const std::string& conninfo);

// True for what names a PostgreSQL database rather than a SQLite file.
bool IsPostgresConninfo(const std::string& state);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_POSTGRES_STATE_STORE_H_
