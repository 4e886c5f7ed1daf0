// Gradient checkpointing; see layer_checkpoint.h. A hand-made autograd node
// (libtorch has no torch.utils.checkpoint): its next edges are the layer's
// input and parameters, and its backward re-runs the layer.
#include "lora/internal/layer_checkpoint.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <memory>
#include <string>
#include <utility>

namespace openforce::lora::internal {
namespace {

using torch::autograd::Node;
using torch::autograd::variable_list;

class CheckpointBackward : public Node {
 public:
  CheckpointBackward(
      at::Tensor input,
      std::function<at::Tensor(const at::Tensor&, at::Generator)> layer,
      std::vector<at::Tensor> parameters, at::Generator generator)
      : input_(std::move(input)),
        layer_(std::move(layer)),
        parameters_(std::move(parameters)),
        generator_(std::move(generator)) {}

  std::string name() const override { return "CheckpointBackward"; }

  variable_list apply(variable_list&& grads) override {
    at::Tensor input = input_.detach().requires_grad_(true);
    at::Tensor output;
    {
      torch::autograd::AutoGradMode enable(true);
      output = layer_(
          input, generator_.defined() ? generator_.clone() : at::Generator());
    }
    variable_list inputs = {input};
    inputs.insert(inputs.end(), parameters_.begin(), parameters_.end());
    variable_list result = torch::autograd::grad(
        {output}, inputs, {grads[0]}, /*retain_graph=*/false,
        /*create_graph=*/false, /*allow_unused=*/true);
    // The recomputation is done with; free what it kept.
    layer_ = nullptr;
    input_ = at::Tensor();
    return result;
  }

  void release_variables() override {
    input_ = at::Tensor();
    layer_ = nullptr;
  }

 private:
  at::Tensor input_;
  std::function<at::Tensor(const at::Tensor&, at::Generator)> layer_;
  std::vector<at::Tensor> parameters_;
  at::Generator generator_;
};

}  // namespace

at::Tensor CheckpointedLayer(
    const at::Tensor& input,
    std::function<at::Tensor(const at::Tensor&, at::Generator)> layer,
    std::vector<at::Tensor> parameters, const at::Generator& generator) {
  // The state the layer starts from, for the recomputation.
  at::Generator saved =
      generator.defined() ? generator.clone() : at::Generator();
  at::Tensor output;
  {
    torch::autograd::AutoGradMode disable(false);
    output = layer(input, generator);
  }
  variable_list edges_from = {input};
  edges_from.insert(edges_from.end(), parameters.begin(), parameters.end());
  if (!torch::autograd::compute_requires_grad(edges_from)) return output;
  auto node = std::shared_ptr<CheckpointBackward>(
      new CheckpointBackward(input.detach(), std::move(layer),
                             std::move(parameters), std::move(saved)),
      torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(edges_from));
  torch::autograd::set_history(output, node);
  return output;
}

}  // namespace openforce::lora::internal
