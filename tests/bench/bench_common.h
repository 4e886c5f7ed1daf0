// What the CPU benchmarks share: a wall clock, the copy bandwidth that
// decode figures are compared with, and the ~110M-parameter bench model.
#ifndef OPENFORCE_TESTS_BENCH_BENCH_COMMON_H_
#define OPENFORCE_TESTS_BENCH_BENCH_COMMON_H_

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>

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

}  // namespace openforce::lora::bench

#endif  // OPENFORCE_TESTS_BENCH_BENCH_COMMON_H_
