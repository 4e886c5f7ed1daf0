// RETURN_IF_ERROR / ASSIGN_OR_RETURN: early-return helpers for absl::Status and
// absl::StatusOr. Debian's Abseil (20220623) ships no status macros, so the
// project keeps this one small pair.
#ifndef OPENFORCE_COMMON_STATUS_MACROS_H_
#define OPENFORCE_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function
// if not OK.
#define RETURN_IF_ERROR(expr)                              \
  do {                                                     \
    ::absl::Status openforce_status_ = (expr);             \
    if (!openforce_status_.ok()) return openforce_status_; \
  } while (false)

#define OPENFORCE_STATUS_CONCAT_INNER(a, b) a##b
#define OPENFORCE_STATUS_CONCAT(a, b) OPENFORCE_STATUS_CONCAT_INNER(a, b)

// Evaluates `expr` (an absl::StatusOr<T>); returns its status if not OK,
// otherwise moves the value into `lhs`, which may be a declaration (`auto x`)
// or an existing variable.
#define ASSIGN_OR_RETURN(lhs, expr) \
  OPENFORCE_ASSIGN_OR_RETURN_IMPL(  \
      OPENFORCE_STATUS_CONCAT(openforce_statusor_, __LINE__), lhs, expr)

#define OPENFORCE_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // OPENFORCE_COMMON_STATUS_MACROS_H_
