// Matrix-vector products over block-quantized weights (quantized_matrix.h)
// for token-by-token decoding, which reads every weight once per token and is
// bound by memory bandwidth: each kernel streams the quantized bytes once and
// expands them in registers (int8 and 4-bit codes converted to fp32, NF4
// indices looked up in a register-held table), never writing a dense weight.
// AVX-512 and AVX2 versions, chosen at run time from the CPU's flags, and a
// portable one.
#ifndef OPENFORCE_LORA_INTERNAL_QUANTIZED_GEMV_H_
#define OPENFORCE_LORA_INTERNAL_QUANTIZED_GEMV_H_

#include <cstdint>
#include <vector>

namespace openforce::lora {
struct QuantizedMatrix;
}  // namespace openforce::lora

namespace openforce::lora::internal {

// kAvx512Vnni runs every format as integer dot products (vpdpbusd) against
// the input rounded to int8 per block of 32, as llama.cpp does: far fewer
// instructions per weight (the float kernels convert each weight to fp32 and
// are bound by that, not by memory), for an input rounding error of at most
// half a step (the block's amax / 127). nf4's levels are int8 there too
// (round(level x 127), looked up with vpshufb): at most half of 1/127 of the
// block absmax from the float levels.
enum class GemvIsa { kPortable, kAvx2, kAvx512, kAvx512Vnni };

// What this CPU runs (checked once).
GemvIsa BestGemvIsa();
// Every ISA this CPU can run, the portable one first (for tests).
std::vector<GemvIsa> AvailableGemvIsas();
const char* GemvIsaName(GemvIsa isa);

// y[rows] = W x[cols] for a CPU matrix, fp32 in and out, rows split over
// libtorch's intra-op threads.
void QuantizedGemv(const QuantizedMatrix& matrix, const float* x, float* y);
void QuantizedGemvWith(GemvIsa isa, const QuantizedMatrix& matrix,
                       const float* x, float* y);

// The absmax of an NF4 block from its double-quantized code; quantizing and
// every kernel read it back the same way.
inline float Nf4BlockScale(int8_t code, float group_scale, float mean) {
  return static_cast<float>(code) * group_scale + mean;
}

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_QUANTIZED_GEMV_H_
