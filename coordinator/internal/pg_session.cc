// PostgreSQL sessions and their pool; see pg_session.h.
#include "coordinator/internal/pg_session.h"

#include "absl/strings/match.h"

namespace openforce::coordinator::internal {
namespace {

// PostgreSQL's type oid for bytea (pg_type.h is a server header).
constexpr Oid kByteaOid = 17;

struct PgFreer {
  void operator()(unsigned char* memory) const { PQfreemem(memory); }
};

}  // namespace

std::string PgRow::Text(int column) const {
  const char* value = PQgetvalue(result_, row_, column);
  const int length = PQgetlength(result_, row_, column);
  if (PQftype(result_, column) != kByteaOid) return std::string(value, length);
  size_t size = 0;
  std::unique_ptr<unsigned char, PgFreer> bytes(
      PQunescapeBytea(reinterpret_cast<const unsigned char*>(value), &size));
  if (bytes == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(bytes.get()), size);
}

int64_t PgRow::Int(int column) const {
  int64_t value = 0;
  if (!absl::SimpleAtoi(PQgetvalue(result_, row_, column), &value)) return 0;
  return value;
}

double PgRow::Double(int column) const {
  double value = 0;
  if (!absl::SimpleAtod(PQgetvalue(result_, row_, column), &value)) return 0;
  return value;
}

absl::Status PgRow::Message(int column,
                            google::protobuf::MessageLite* out) const {
  if (!out->ParseFromString(Text(column))) {
    return absl::DataLossError(
        absl::StrCat("stored ", out->GetTypeName(), " does not parse"));
  }
  return absl::OkStatus();
}

int Changes(const PGresult* result) {
  int changes = 0;
  if (!absl::SimpleAtoi(PQcmdTuples(const_cast<PGresult*>(result)), &changes)) {
    return 0;
  }
  return changes;
}

absl::Status PgError(const PGresult* result, PGconn* connection) {
  const char* state = result == nullptr
                          ? nullptr
                          : PQresultErrorField(result, PG_DIAG_SQLSTATE);
  std::string message = result == nullptr ? PQerrorMessage(connection)
                                          : PQresultErrorMessage(result);
  while (!message.empty() && message.back() == '\n') message.pop_back();
  const std::string sqlstate = state == nullptr ? "" : state;
  if (absl::StartsWith(sqlstate, "23"))  // integrity constraint violation
    return absl::AlreadyExistsError(absl::StrCat("constraint: ", message));
  if (sqlstate == "40001" || sqlstate == "40P01")  // serialization, deadlock
    return absl::AbortedError(absl::StrCat("postgresql: ", message, "; retry"));
  if (absl::StartsWith(sqlstate, "22"))  // data exception (encoding, range)
    return absl::InvalidArgumentError(absl::StrCat("postgresql: ", message));
  if (absl::StartsWith(sqlstate, "08") || PQstatus(connection) != CONNECTION_OK)
    return absl::UnavailableError(absl::StrCat("postgresql: ", message));
  return absl::InternalError(absl::StrCat("postgresql: ", message));
}

absl::StatusOr<PgConnection> ConnectPg(const std::string& conninfo,
                                       const char* setup) {
  PgConnection connection(PQconnectdb(conninfo.c_str()));
  if (connection == nullptr)
    return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(connection.get()) != CONNECTION_OK) {
    std::string message = PQerrorMessage(connection.get());
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL: ", message));
  }
  PgResult set(PQexec(connection.get(), setup));
  if (PQresultStatus(set.get()) != PGRES_COMMAND_OK)
    return PgError(set.get(), connection.get());
  return connection;
}

absl::StatusOr<PgResult> PgSession::Exec(const std::string& sql,
                                         const Params& params) {
  if (params.has_nul()) {
    return absl::InvalidArgumentError(
        "a text value holds a NUL byte, which PostgreSQL cannot store");
  }
  auto prepared = statements_.find(sql);
  if (prepared == statements_.end()) {
    const std::string name = absl::StrCat("s", statements_.size());
    PgResult result(PQprepare(connection_.get(), name.c_str(), sql.c_str(),
                              params.size(), nullptr));
    if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
      absl::Status error = Failed(result.get());
      return absl::Status(error.code(),
                          absl::StrCat(error.message(), " in: ", sql));
    }
    prepared = statements_.emplace(sql, name).first;
  }
  const std::vector<const char*> values = params.values();
  const std::vector<int> lengths = params.lengths();
  PgResult result(PQexecPrepared(connection_.get(), prepared->second.c_str(),
                                 params.size(), values.data(), lengths.data(),
                                 params.formats().data(),
                                 /*resultFormat=*/0));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return Failed(result.get());
  return result;
}

absl::Status PgSession::ExecPlain(const char* sql) {
  PgResult result(PQexec(connection_.get(), sql));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return Failed(result.get());
  return absl::OkStatus();
}

absl::Status PgSession::Failed(const PGresult* result) {
  absl::Status error = PgError(result, connection_.get());
  if (PQstatus(connection_.get()) != CONNECTION_OK) {
    PQreset(connection_.get());
    statements_.clear();
    in_transaction_ = false;
    if (PQstatus(connection_.get()) == CONNECTION_OK) {
      PgResult set(PQexec(connection_.get(), setup_.c_str()));
    }
  }
  return error;
}

absl::StatusOr<PgSessionPool::Handle> PgSessionPool::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    auto available = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return !idle_.empty() || open_ < max_sessions_;
    };
    mu_.Await(absl::Condition(&available));
    if (!idle_.empty()) {
      std::unique_ptr<PgSession> session = std::move(idle_.back());
      idle_.pop_back();
      return Handle(this, std::move(session));
    }
    ++open_;  // reserved; connected below without the lock
  }
  absl::StatusOr<PgConnection> connection =
      ConnectPg(conninfo_, setup_.c_str());
  if (!connection.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    return connection.status();
  }
  return Handle(this, std::make_unique<PgSession>(*std::move(connection),
                                                  setup_, on_commit_));
}

void PgSessionPool::Return(std::unique_ptr<PgSession> session) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(std::move(session));
}

}  // namespace openforce::coordinator::internal
