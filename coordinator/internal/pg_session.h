// One PostgreSQL connection with its prepared statements (PgSession), a
// bounded pool of them (PgSessionPool), statement parameters and result rows.
// The PostgreSQL StateStore runs each transaction on a session taken from the
// pool, so reads and writes of different calls proceed in parallel on the
// server instead of queueing behind one connection.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_PG_SESSION_H_
#define OPENFORCE_COORDINATOR_INTERNAL_PG_SESSION_H_

#include <libpq-fe.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "google/protobuf/message_lite.h"

namespace openforce::coordinator::internal {

struct PgConnectionCloser {
  void operator()(PGconn* connection) const { PQfinish(connection); }
};
struct PgResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgConnection = std::unique_ptr<PGconn, PgConnectionCloser>;
using PgResult = std::unique_ptr<PGresult, PgResultClearer>;

// Parameters of one statement: text, except bytes (BYTEA) which travel in
// binary so that no escaping is involved.
class Params {
 public:
  Params& Add(int64_t value) { return AddText(absl::StrCat(value)); }
  Params& Add(const std::string& value) {
    if (value.find('\0') != std::string::npos) has_nul_ = true;
    return AddText(value);
  }
  Params& Add(const char* value) { return Add(std::string(value)); }
  Params& AddDouble(double value) {
    return AddText(absl::StrFormat("%.17g", value));
  }
  Params& AddBytes(std::string value) {
    values_.push_back(std::move(value));
    formats_.push_back(1);
    return *this;
  }
  Params& AddMessage(const google::protobuf::MessageLite& message) {
    return AddBytes(message.SerializeAsString());
  }

  // PostgreSQL text cannot hold NUL; what the coordinator stores as text is
  // checked before it gets here, so this only guards against a slip.
  bool has_nul() const { return has_nul_; }
  int size() const { return static_cast<int>(values_.size()); }
  std::vector<const char*> values() const {
    std::vector<const char*> pointers;
    for (const std::string& value : values_) pointers.push_back(value.data());
    return pointers;
  }
  std::vector<int> lengths() const {
    std::vector<int> lengths;
    for (const std::string& value : values_)
      lengths.push_back(static_cast<int>(value.size()));
    return lengths;
  }
  const std::vector<int>& formats() const { return formats_; }

 private:
  Params& AddText(std::string value) {
    values_.push_back(std::move(value));
    formats_.push_back(0);
    return *this;
  }
  std::vector<std::string> values_;
  std::vector<int> formats_;
  bool has_nul_ = false;
};

// One row of a text-format result, read as the shared readers
// (state_rows.h) expect.
class PgRow {
 public:
  PgRow(const PGresult* result, int row) : result_(result), row_(row) {}
  std::string Text(int column) const;
  int64_t Int(int column) const;
  double Double(int column) const;
  absl::Status Message(int column, google::protobuf::MessageLite* out) const;

 private:
  const PGresult* result_;
  int row_;
};

// Rows an UPDATE or DELETE changed.
int Changes(const PGresult* result);

// The error of a failed command, by what a caller can do about it:
// AlreadyExists for a constraint, Aborted for a deadlock or serialization
// failure (retry), InvalidArgument for bad data, Unavailable for a lost
// connection.
absl::Status PgError(const PGresult* result, PGconn* connection);

// Connects and applies `setup` (SET statements).
absl::StatusOr<PgConnection> ConnectPg(const std::string& conninfo,
                                       const char* setup);

class PgSession {
 public:
  // `on_commit` runs after each committed transaction (group commit).
  PgSession(PgConnection connection, std::string setup,
            std::function<void()> on_commit)
      : connection_(std::move(connection)),
        setup_(std::move(setup)),
        on_commit_(std::move(on_commit)) {}

  // Runs `sql` with `params` as a statement prepared once per connection.
  [[nodiscard]] absl::StatusOr<PgResult> Exec(const std::string& sql,
                                              const Params& params);
  // A statement without parameters (session settings, the schema).
  [[nodiscard]] absl::Status ExecPlain(const char* sql);

  // Runs `body` as one transaction, committed (visible, and durable after
  // the next sync) when it succeeds and rolled back when it fails.
  template <typename Body>
  [[nodiscard]] absl::Status Transaction(Body body) {
    RETURN_IF_ERROR(ExecPlain("BEGIN"));
    in_transaction_ = true;
    absl::Status status = body();
    if (!status.ok()) {
      if (in_transaction_) (void)ExecPlain("ROLLBACK");
      in_transaction_ = false;
      return status;
    }
    in_transaction_ = false;
    RETURN_IF_ERROR(ExecPlain("COMMIT"));
    if (on_commit_) on_commit_();
    return absl::OkStatus();
  }

 private:
  // The error of `result`; a lost connection is re-established for the
  // next call (its prepared statements are gone with it).
  absl::Status Failed(const PGresult* result);

  PgConnection connection_;
  const std::string setup_;
  const std::function<void()> on_commit_;
  // SQL -> name of its prepared statement on connection_.
  absl::flat_hash_map<std::string, std::string> statements_;
  bool in_transaction_ = false;
};

// At most `max_sessions` connections, opened as needed; a caller waits for a
// free one rather than opening more.
class PgSessionPool {
 public:
  PgSessionPool(std::string conninfo, std::string setup, size_t max_sessions,
                std::function<void()> on_commit)
      : conninfo_(std::move(conninfo)),
        setup_(std::move(setup)),
        max_sessions_(max_sessions),
        on_commit_(std::move(on_commit)) {}

  // A session held until the handle goes out of scope.
  class Handle {
   public:
    Handle(PgSessionPool* pool, std::unique_ptr<PgSession> session)
        : pool_(pool), session_(std::move(session)) {}
    Handle(Handle&&) = default;
    Handle& operator=(Handle&&) = default;
    ~Handle() {
      if (session_ != nullptr) pool_->Return(std::move(session_));
    }
    PgSession* operator->() { return session_.get(); }
    PgSession& operator*() { return *session_; }

   private:
    PgSessionPool* pool_;
    std::unique_ptr<PgSession> session_;
  };

  [[nodiscard]] absl::StatusOr<Handle> Acquire();

 private:
  void Return(std::unique_ptr<PgSession> session);

  const std::string conninfo_;
  const std::string setup_;
  const size_t max_sessions_;
  const std::function<void()> on_commit_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<PgSession>> idle_ ABSL_GUARDED_BY(mu_);
  size_t open_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_PG_SESSION_H_
