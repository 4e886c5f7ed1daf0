// SQLite handles owned by RAII deleters, and a cached prepared statement
// bound and stepped by one caller at a time (the SQLite StateStore's).
#ifndef OPENFORCE_COORDINATOR_INTERNAL_SQLITE_STATEMENT_H_
#define OPENFORCE_COORDINATOR_INTERNAL_SQLITE_STATEMENT_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/message_lite.h"

namespace openforce::coordinator::internal {

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StatementFinalizer {
  void operator()(sqlite3_stmt* statement) const {
    sqlite3_finalize(statement);
  }
};
struct StatementResetter {
  void operator()(sqlite3_stmt* statement) const {
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
  }
};

// A prepared statement from the connection's cache, bound and stepped by one
// caller under the store's lock; reset (bindings cleared) when it goes out of
// scope, so the next caller of the same SQL reuses it without re-preparing.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* statement)
      : db_(db), statement_(statement) {}
  Statement(Statement&&) = default;
  Statement& operator=(Statement&&) = default;

  Statement& Bind(int64_t value) {
    sqlite3_bind_int64(statement_.get(), ++index_, value);
    return *this;
  }
  Statement& Bind(const std::string& value) {
    sqlite3_bind_text(statement_.get(), ++index_, value.data(),
                      static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindBlob(const std::string& value) {
    sqlite3_bind_blob(statement_.get(), ++index_, value.data(),
                      static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindMessage(const google::protobuf::MessageLite& message) {
    return BindBlob(message.SerializeAsString());
  }

  // True when a row is available, false when done.
  absl::StatusOr<bool> Step() {
    const int rc = sqlite3_step(statement_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    if (rc == SQLITE_CONSTRAINT) {
      return absl::AlreadyExistsError(
          absl::StrCat("constraint: ", sqlite3_errmsg(db_)));
    }
    return absl::InternalError(absl::StrCat("sqlite: ", sqlite3_errmsg(db_)));
  }
  absl::Status Run() {
    ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }

  double Double(int column) const {
    return sqlite3_column_double(statement_.get(), column);
  }
  Statement& BindDouble(double value) {
    sqlite3_bind_double(statement_.get(), ++index_, value);
    return *this;
  }
  int64_t Int(int column) const {
    return sqlite3_column_int64(statement_.get(), column);
  }
  std::string Text(int column) const {
    const void* data = sqlite3_column_blob(statement_.get(), column);
    const int size = sqlite3_column_bytes(statement_.get(), column);
    return data ? std::string(static_cast<const char*>(data), size)
                : std::string();
  }
  absl::Status Message(int column, google::protobuf::MessageLite* out) const {
    if (!out->ParseFromString(Text(column))) {
      return absl::DataLossError(
          absl::StrCat("stored ", out->GetTypeName(), " does not parse"));
    }
    return absl::OkStatus();
  }

 private:
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StatementResetter> statement_;
  int index_ = 0;
};

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_SQLITE_STATEMENT_H_
