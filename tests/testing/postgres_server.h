// A throwaway PostgreSQL server for tests, from Debian's postgresql package:
// initdb into a temporary directory and pg_ctl start, listening only on a
// unix socket in that directory (so parallel tests never collide on a port),
// run as the unprivileged user scripts/setup.sh creates when the test runs
// as root (PostgreSQL refuses root). Stopped and removed when destroyed.
#ifndef OPENFORCE_TESTS_TESTING_POSTGRES_SERVER_H_
#define OPENFORCE_TESTS_TESTING_POSTGRES_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {

// The user scripts/setup.sh creates for PostgreSQL tests.
inline constexpr char kPostgresTestUser[] = "openforce-pg";

class PostgresServer {
 public:
  // FailedPrecondition naming what is missing (the package, the user) when
  // the server cannot be set up; the server's log when it does not start.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();

  // Creates database `name` (letters, digits, underscores) unless it exists;
  // the URI that reaches it.
  [[nodiscard]] absl::StatusOr<std::string> CreateDatabase(
      const std::string& name);
  std::string Uri(const std::string& database) const;

 private:
  PostgresServer() = default;
  // `argv` run as the server's user; its stderr on failure.
  absl::Status Run(std::vector<std::string> argv) const;

  TempDir dir_;
  std::string bin_dir_;
  std::string data_dir_;
  std::string socket_dir_;
  bool as_other_user_ = false;
  bool started_ = false;
};

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_TESTING_POSTGRES_SERVER_H_
