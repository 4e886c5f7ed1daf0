// What the CPU benchmarks share: a wall clock, the copy bandwidth that
// decode figures are compared with, the ~110M-parameter bench model and
// random training examples.
#ifndef OPENFORCE_TESTS_BENCH_BENCH_COMMON_H_
#define OPENFORCE_TESTS_BENCH_BENCH_COMMON_H_

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "lora/dataset.h"
#include "lora/llama_config.h"

namespace openforce::lora::bench {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Bytes read plus bytes written per second for a buffer far larger than the
// caches.
inline double MeasureCopyBandwidth() {
  const int64_t elements = int64_t{256} << 20;  // 1 GiB of fp32
  at::Tensor source = at::ones({elements});
  at::Tensor target = at::empty_like(source);
  target.copy_(source);
  const auto start = Clock::now();
  int iterations = 0;
  while (Seconds(start) < 1.0 || iterations < 3) {
    target.copy_(source);
    ++iterations;
  }
  return 2.0 * static_cast<double>(elements) * 4 * iterations / Seconds(start);
}

// Hidden 768, 12 layers, 12 heads, vocab 16000: about 110M parameters.
inline LlamaConfig BenchConfig110M() {
  LlamaConfig config;
  config.vocab_size = 16000;
  config.hidden_size = 768;
  config.intermediate_size = 2048;
  config.num_hidden_layers = 12;
  config.num_attention_heads = 12;
  config.num_key_value_heads = 12;
  config.head_dim = 64;
  config.max_position_embeddings = 1024;
  return config;
}

// `count` examples of `sequence` random token ids (from seed 3), each its own
// labels: a training step's cost does not depend on what it learns.
inline std::vector<Example> RandomExamples(const LlamaConfig& config, int count,
                                           int64_t sequence) {
  std::vector<Example> data;
  at::Generator generator = at::detail::createCPUGenerator(3);
  for (int i = 0; i < count; ++i) {
    const at::Tensor ids =
        at::randint(3, config.vocab_size, {sequence}, generator, at::kLong);
    Example example;
    example.input_ids.assign(ids.data_ptr<int64_t>(),
                             ids.data_ptr<int64_t>() + sequence);
    example.labels = example.input_ids;
    data.push_back(std::move(example));
  }
  return data;
}

}  // namespace openforce::lora::bench

#endif  // OPENFORCE_TESTS_BENCH_BENCH_COMMON_H_
