// gMock matchers for absl::Status and absl::StatusOr: IsOk() and
// StatusIs(code, HasSubstr("...")), so tests assert the specific error.
#ifndef OPENFORCE_TESTS_TESTING_STATUS_MATCHERS_H_
#define OPENFORCE_TESTS_TESTING_STATUS_MATCHERS_H_

#include <gmock/gmock.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace openforce::testing {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + std::string(absl::StatusCodeToString(code))) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

}  // namespace openforce::testing

#define ASSERT_OK(expr) ASSERT_THAT((expr), ::openforce::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::openforce::testing::IsOk())

#endif  // OPENFORCE_TESTS_TESTING_STATUS_MATCHERS_H_
