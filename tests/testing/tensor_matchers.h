// Tolerance helpers for tensors: the largest absolute difference, and
// assertions that report it together with where it occurs.
#ifndef OPENFORCE_TESTS_TESTING_TENSOR_MATCHERS_H_
#define OPENFORCE_TESTS_TESTING_TENSOR_MATCHERS_H_

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

namespace openforce::testing {

inline double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

inline ::testing::AssertionResult TensorsNear(const at::Tensor& actual,
                                              const at::Tensor& expected,
                                              double tolerance) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.sizes() << " != expected " << expected.sizes();
  }
  const double diff = MaxAbsDiff(actual, expected);
  if (diff <= tolerance) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "max |actual - expected| = " << diff << " exceeds " << tolerance;
}

inline ::testing::AssertionResult TensorsEqual(const at::Tensor& actual,
                                               const at::Tensor& expected) {
  if (actual.sizes() != expected.sizes() ||
      actual.scalar_type() != expected.scalar_type()) {
    return ::testing::AssertionFailure() << "shape or dtype differs";
  }
  if (at::equal(actual, expected)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "tensors differ; max |diff| = " << MaxAbsDiff(actual, expected);
}

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_TESTING_TENSOR_MATCHERS_H_
