// The coordinator's front door with the real binary: enrollment and admin
// tokens, TLS from a certificate and key, plaintext only on loopback unless
// --insecure, and the standard health and reflection services that stock
// gRPC tools use.
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {
namespace {

using ::testing::HasSubstr;

std::string Token(const Federation& federation, const std::string& name) {
  absl::StatusOr<std::string> text =
      ReadFileToString(federation.data_dir() + "/" + name);
  EXPECT_OK(text);
  return text->substr(0, text->find('\n'));
}

TEST(SecurityTest, RegisterNeedsTheEnrollmentTokenAndAdminCallsTheAdminToken) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator();
  auto stub = federation.WorkerStub();

  ScriptedWorker worker(stub.get(), 1);
  grpc::Status missing = worker.Register();
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("needs an enrollment token"));
  grpc::Status wrong = worker.Register("not-the-token");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(wrong.error_message(), HasSubstr("not valid"));
  EXPECT_TRUE(worker.Register(Token(federation, "enrollment.token")).ok());

  // Admin calls: no token, a wrong token, then the right one.
  auto channel = grpc::CreateChannel(federation.address(),
                                     grpc::InsecureChannelCredentials());
  auto admin = v1::AdminService::NewStub(channel);
  {
    grpc::ClientContext context;
    v1::ListJobsResponse response;
    grpc::Status status = admin->ListJobs(&context, {}, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  for (const std::string& header :
       {std::string("Bearer wrong"),
        std::string("Basic ") + Token(federation, "admin.token"),
        Token(federation, "admin.token")}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", header);
    v1::SubmitJobResponse response;
    grpc::Status status = admin->SubmitJob(&context, {}, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << header;
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization",
                        "Bearer " + Token(federation, "admin.token"));
    v1::ListJobsResponse response;
    EXPECT_TRUE(admin->ListJobs(&context, {}, &response).ok());
  }

  // The worker binary with a wrong token says so and exits.
  ASSERT_OK(WriteFileAtomically(dir.path() + "/wrong.token", "nope\n", 0600));
  ProcessResult run = RunProcess(
      {OPENFORCE_WORKER_PATH, "run", "--coordinator", federation.address(),
       "--data", dir.path() + "/w", "--enrollment-token-file",
       dir.path() + "/wrong.token", "--measure=false"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.stderr_text, HasSubstr("enrollment token is not valid"));
  // A token file others can read is refused before anything is sent.
  ASSERT_OK(WriteFileAtomically(dir.path() + "/open.token", "x\n", 0644));
  ProcessResult readable = RunProcess(
      {OPENFORCE_WORKER_PATH, "run", "--coordinator", federation.address(),
       "--data", dir.path() + "/w", "--enrollment-token-file",
       dir.path() + "/open.token", "--measure=false"});
  EXPECT_EQ(readable.exit_code, 1);
  EXPECT_THAT(readable.stderr_text, HasSubstr("chmod 600"));
}

// One unary call through the generic stub, for services whose generated
// code Debian does not ship.
grpc::Status GenericUnary(grpc::Channel* channel, const std::string& method,
                          const std::string& request, std::string* response) {
  grpc::GenericStub stub(channel->shared_from_this());
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  auto call = stub.PrepareUnaryCall(&context, method, request_buffer, &queue);
  call->StartCall();
  grpc::ByteBuffer response_buffer;
  grpc::Status status;
  call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  queue.Next(&tag, &ok);
  std::vector<grpc::Slice> slices;
  (void)response_buffer.Dump(&slices);
  for (const grpc::Slice& part : slices)
    response->append(reinterpret_cast<const char*>(part.begin()), part.size());
  return status;
}

TEST(SecurityTest, HealthAndReflectionServicesAnswer) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  auto channel = grpc::CreateChannel(federation.address(),
                                     grpc::InsecureChannelCredentials());
  // grpc.health.v1.Health/Check with an empty request: status SERVING (1).
  std::string response;
  grpc::Status health = GenericUnary(
      channel.get(), "/grpc.health.v1.Health/Check", "", &response);
  ASSERT_TRUE(health.ok()) << health.error_message();
  EXPECT_EQ(response, std::string("\x08\x01", 2));

  // Server reflection lists our services (list_services = "", field 7).
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  auto call = stub.PrepareCall(
      &context,
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &queue);
  void* tag = nullptr;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  queue.Next(&tag, &ok);
  ASSERT_TRUE(ok);
  grpc::Slice request(std::string("\x3a\x00", 2));
  call->Write(grpc::ByteBuffer(&request, 1), reinterpret_cast<void*>(2));
  queue.Next(&tag, &ok);
  ASSERT_TRUE(ok);
  grpc::ByteBuffer reply;
  call->Read(&reply, reinterpret_cast<void*>(3));
  queue.Next(&tag, &ok);
  ASSERT_TRUE(ok);
  std::vector<grpc::Slice> slices;
  (void)reply.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& part : slices)
    bytes.append(reinterpret_cast<const char*>(part.begin()), part.size());
  EXPECT_THAT(bytes, HasSubstr("openforce.v1.WorkerService"));
  EXPECT_THAT(bytes, HasSubstr("openforce.v1.AdminService"));
  EXPECT_THAT(bytes, HasSubstr("grpc.health.v1.Health"));
  context.TryCancel();
  grpc::Status finished;
  call->Finish(&finished, reinterpret_cast<void*>(4));
  queue.Next(&tag, &ok);
}

TEST(SecurityTest, TlsWithAGivenCertificateAndPlaintextOnlyOnLoopback) {
  TempDir dir;
  const std::string cert = dir.path() + "/cert.pem";
  const std::string key = dir.path() + "/key.pem";
  ProcessResult made = RunProcess(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
       "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
       "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
       "-keyout", key, "-out", cert});
  ASSERT_EQ(made.exit_code, 0) << made.stderr_text;
  chmod(key.c_str(), 0600);

  Federation federation(dir.path());
  // Plaintext on every interface is refused without --insecure.
  ProcessResult refused =
      RunProcess({OPENFORCE_COORDINATOR_PATH, "serve", "--data",
                  federation.data_dir(), "--listen", "0.0.0.0:0"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.stderr_text, HasSubstr("refusing to serve plaintext"));

  federation.StartCoordinator(
      {"--open-enrollment", "--tls-cert", cert, "--tls-key", key});
  const std::string token = Token(federation, "admin.token");
  TransportOptions tls;
  tls.tls_ca_file = cert;
  auto client =
      coordinator::AdminClient::Connect(federation.address(), tls, token);
  ASSERT_OK(client);
  EXPECT_OK((*client)->ListJobs());
  // A plaintext client cannot talk to the TLS server.
  auto plaintext =
      coordinator::AdminClient::Connect(federation.address(), {}, token);
  ASSERT_OK(plaintext);
  EXPECT_THAT((*plaintext)->ListJobs(),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  // The CLI too, through --tls-ca.
  ProcessResult list =
      RunProcess({OPENFORCE_COORDINATOR_PATH, "job", "list", "--coordinator",
                  federation.address(), "--tls-ca", cert, "--data",
                  federation.data_dir()});
  EXPECT_EQ(list.exit_code, 0) << list.stderr_text;
}

}  // namespace
}  // namespace openforce::testing
