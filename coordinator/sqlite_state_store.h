// StateStore on embedded SQLite: one database file in WAL mode with
// synchronous=FULL, so that a transaction that returned is on disk even if the
// process is killed the next instant.
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
