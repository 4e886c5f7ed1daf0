// Tiny Llama-architecture checkpoints for tests: seeded random weights written
// as a real config.json + model.safetensors, with the byte-level tokenizer
// marker.
#ifndef OPENFORCE_TESTS_TESTING_TINY_LLAMA_H_
#define OPENFORCE_TESTS_TESTING_TINY_LLAMA_H_

#include <string>

#include "lora/checkpoint.h"
#include "lora/llama_config.h"

namespace openforce::testing {

// vocab 259 (byte tokenizer), hidden 32, 2 layers, 4 heads, 2 kv heads,
// intermediate 64.
lora::LlamaConfig TinyLlamaConfig();

// Writes a checkpoint for `config` with weights from `seed` into `dir`; returns
// `dir`.
// `init_std` as in RandomLlamaWeights: 0.02 like transformers; 0.1 gives the
// large-norm features a pretrained model has, which a LoRA needs to express
// confident predictions through a frozen random lm_head.
std::string WriteTinyLlama(const std::string& dir,
                           const lora::LlamaConfig& config, uint64_t seed,
                           double init_std = 0.02);

// Llama-3.2-1B's published config.json, exactly: hidden 2048, 16 layers, 32
// heads, 8 kv heads, head_dim 64, vocab 128256, rope_theta 500000 with
// llama3 rope scaling (factor 32), tied embeddings, bf16.
lora::LlamaConfig Llama32OneBConfig();

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_TESTING_TINY_LLAMA_H_
