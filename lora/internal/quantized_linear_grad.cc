// A backward node that dequantizes on demand; see quantized_linear_grad.h.
#include "lora/internal/quantized_linear_grad.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <memory>
#include <string>
#include <utility>

#include "lora/quantized_matrix.h"

namespace openforce::lora::internal {
namespace {

using torch::autograd::Node;
using torch::autograd::variable_list;

class QuantizedLinearBackward : public Node {
 public:
  explicit QuantizedLinearBackward(QuantizedMatrix matrix)
      : matrix_(std::move(matrix)) {}

  std::string name() const override { return "QuantizedLinearBackward"; }

  variable_list apply(variable_list&& grads) override {
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return {at::Tensor()};
    // grad_x = grad_y W, with W dense only for this product.
    return {at::matmul(grad, DequantizeMatrix(matrix_, grad.scalar_type()))};
  }

  void release_variables() override { matrix_ = QuantizedMatrix(); }

 private:
  QuantizedMatrix matrix_;  // shares the model's code tensors
};

}  // namespace

at::Tensor QuantizedLinearWithGrad(const at::Tensor& x,
                                   const QuantizedMatrix& matrix,
                                   const at::Tensor& bias) {
  at::Tensor output;
  {
    torch::autograd::AutoGradMode disable(false);
    output = at::linear(x, DequantizeMatrix(matrix, x.scalar_type()), bias);
  }
  if (!torch::autograd::compute_requires_grad(x)) return output;
  auto node = std::shared_ptr<QuantizedLinearBackward>(
      new QuantizedLinearBackward(matrix), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(x));
  torch::autograd::set_history(output, node);
  return output;
}

}  // namespace openforce::lora::internal
