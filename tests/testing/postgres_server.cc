// The throwaway PostgreSQL server; see postgres_server.h.
#include "tests/testing/postgres_server.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "tests/testing/subprocess.h"

namespace openforce::testing {
namespace {

struct PgConnectionCloser {
  void operator()(PGconn* connection) const { PQfinish(connection); }
};
struct PgResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResult = std::unique_ptr<PGresult, PgResultClearer>;

// Debian installs each major version under /usr/lib/postgresql/<version>;
// the newest one with initdb.
std::string FindBinDir() {
  std::vector<std::string> found;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/usr/lib/postgresql", error)) {
    if (std::filesystem::exists(entry.path() / "bin" / "initdb"))
      found.push_back((entry.path() / "bin").string());
  }
  if (found.empty()) return "";
  std::sort(found.begin(), found.end());
  return found.back();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> server(new PostgresServer());
  server->bin_dir_ = FindBinDir();
  if (server->bin_dir_.empty()) {
    return absl::FailedPreconditionError(
        "no PostgreSQL server under /usr/lib/postgresql: run "
        "scripts/setup.sh (it installs postgresql-15)");
  }
  const std::string root = server->dir_.Join("pg");
  server->data_dir_ = root + "/data";
  server->socket_dir_ = root;
  std::filesystem::create_directories(root);
  if (::geteuid() == 0) {
    const struct passwd* user = ::getpwnam(kPostgresTestUser);
    if (user == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("no user ", kPostgresTestUser,
                       " to run PostgreSQL as: run scripts/setup.sh"));
    }
    // The temporary directory is root's; the server's user only needs to
    // pass through it to its own.
    ::chmod(server->dir_.path().c_str(), 0711);
    if (::chown(root.c_str(), user->pw_uid, user->pw_gid) != 0) {
      return absl::InternalError(absl::StrCat("cannot chown ", root));
    }
    server->as_other_user_ = true;
  }
  if (absl::Status init = server->Run(
          {"initdb", "-D", server->data_dir_, "--auth=trust", "-E", "UTF8",
           "--locale=C", "-U", kPostgresTestUser, "--no-sync"});
      !init.ok()) {
    return init;
  }
  const std::string log = root + "/server.log";
  absl::Status started = server->Run(
      {"pg_ctl", "-D", server->data_dir_, "-l", log, "-w", "-t", "60", "-o",
       absl::StrCat("-k ", server->socket_dir_,
                    " -c listen_addresses='' -c max_connections=200"),
       "start"});
  if (!started.ok()) {
    absl::StatusOr<std::string> text = ReadFileToString(log);
    return absl::UnavailableError(
        absl::StrCat(started.message(), "\nserver log:\n",
                     text.ok() ? *text : text.status().ToString()));
  }
  server->started_ = true;
  return server;
}

PostgresServer::~PostgresServer() {
  if (started_) {
    (void)Run({"pg_ctl", "-D", data_dir_, "-m", "immediate", "-w", "stop"});
  }
}

absl::Status PostgresServer::Run(std::vector<std::string> argv) const {
  argv[0] = bin_dir_ + "/" + argv[0];
  if (as_other_user_) {
    argv.insert(argv.begin(),
                {"/usr/sbin/runuser", "-u", kPostgresTestUser, "--"});
  }
  ProcessResult result = RunProcess(argv);
  if (result.exit_code != 0) {
    return absl::UnavailableError(
        absl::StrCat(argv[0], " ... exited ", result.exit_code, ": ",
                     result.stderr_text, result.stdout_text));
  }
  return absl::OkStatus();
}

std::string PostgresServer::Uri(const std::string& database) const {
  return absl::StrCat("postgresql:///", database, "?host=", socket_dir_,
                      "&user=", kPostgresTestUser);
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase(
    const std::string& name) {
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_')
      return absl::InvalidArgumentError("database names are [A-Za-z0-9_]");
  }
  std::unique_ptr<PGconn, PgConnectionCloser> connection(
      PQconnectdb(Uri("postgres").c_str()));
  if (PQstatus(connection.get()) != CONNECTION_OK)
    return absl::UnavailableError(PQerrorMessage(connection.get()));
  PgResult exists(PQexec(
      connection.get(),
      absl::StrCat("SELECT 1 FROM pg_database WHERE datname='", name, "'")
          .c_str()));
  if (PQntuples(exists.get()) == 0) {
    PgResult created(PQexec(connection.get(),
                            absl::StrCat("CREATE DATABASE ", name).c_str()));
    if (PQresultStatus(created.get()) != PGRES_COMMAND_OK)
      return absl::InternalError(PQresultErrorMessage(created.get()));
  }
  return Uri(name);
}

}  // namespace openforce::testing
