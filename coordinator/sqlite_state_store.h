// StateStore on embedded SQLite, the default: one database file in WAL mode.
// Transactions are visible when they return and durable once Sync() returned
// (one fdatasync of the log shared by every commit before it), so a call that
// was acknowledged survives the process being killed the next instant.
#ifndef OPENFORCE_COORDINATOR_SQLITE_STATE_STORE_H_
#define OPENFORCE_COORDINATOR_SQLITE_STATE_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/state_store.h"

namespace openforce::coordinator {

// Opens (creating if needed) the database at `path` and its schema.
[[nodiscard]] absl::StatusOr<std::unique_ptr<StateStore>> OpenSqliteStateStore(
    const std::string& path);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_SQLITE_STATE_STORE_H_
