// The model advisor on fixed machine profiles, and the probe report's text and
// JSON.
#include "worker/probe_report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/byte_size.h"
#include "tests/testing/status_matchers.h"

namespace openforce::worker {
namespace {

using ::testing::HasSubstr;

HardwareProfile CpuMachine(uint64_t ram) {
  HardwareProfile profile;
  profile.cpu.model = "Test CPU";
  profile.cpu.physical_cores = 8;
  profile.cpu.logical_cores = 16;
  profile.cpu.avx2 = true;
  profile.memory.total_bytes = ram;
  profile.memory.available_bytes = ram / 2;
  return profile;
}

const AdvisorRow& Row(const Advice& advice, const std::string& size_class) {
  for (const AdvisorRow& row : advice.rows) {
    if (row.model->size_class == size_class) return row;
  }
  ADD_FAILURE() << "no row for " << size_class;
  return advice.rows.front();
}

TEST(AdviseModelsTest, SixteenGigabyteLaptopMatchesTheCpuTierRow) {
  // DESIGN.md: cpu tier, 8-16 GB: 1-3B inference comfortable, LoRA fine-tune
  // 1B as is, 3B only with gradient checkpointing.
  absl::StatusOr<Advice> advice =
      AdviseModels(CpuMachine(16 * kGiB), AdvisorOptions{});
  ASSERT_OK(advice);
  EXPECT_EQ(advice->device, "cpu");
  EXPECT_EQ(advice->budget_bytes, 12 * kGiB);
  EXPECT_EQ(advice->largest_inference_class, "3B");
  EXPECT_EQ(advice->largest_training_class, "3B");
  EXPECT_TRUE(Row(*advice, "1B").training_fits);
  EXPECT_FALSE(Row(*advice, "1B").training_needs_checkpointing);
  EXPECT_TRUE(Row(*advice, "3B").training_fits);
  EXPECT_TRUE(Row(*advice, "3B").training_needs_checkpointing);
  EXPECT_GT(Row(*advice, "3B").training_bytes, 12 * kGiB);
  EXPECT_LE(Row(*advice, "3B").training_checkpointed_bytes, 12 * kGiB);
  EXPECT_FALSE(Row(*advice, "7B").training_fits);
  EXPECT_FALSE(Row(*advice, "7B").inference_fits);
}

TEST(AdviseModelsTest, QuantizedBasesOfferSevenBillionToLaptopsAndSmallGpus) {
  // A 16 GB laptop: 7B neither runs nor fine-tunes in bf16, but does with a
  // quantized base (the least compressed that fits is offered).
  absl::StatusOr<Advice> laptop =
      AdviseModels(CpuMachine(16 * kGiB), AdvisorOptions{});
  ASSERT_OK(laptop);
  const AdvisorRow& seven = Row(*laptop, "7B");
  EXPECT_FALSE(seven.training_fits);
  EXPECT_NE(seven.quantized_training_format, WeightFormat::kNone);
  EXPECT_LE(seven.quantized_training_bytes, 12 * kGiB);
  EXPECT_NE(seven.quantized_inference_format, WeightFormat::kNone);
  // And 13B QLoRA on a 4-bit base (about 7 GB of weights) fits the 12 GiB
  // it offers, as the QLoRA paper found for 13B.
  EXPECT_EQ(Row(*laptop, "13B").quantized_training_format, WeightFormat::kQ4);
  EXPECT_EQ(laptop->largest_quantized_training_class, "13B");
  // What fits in full precision gets no quantized suggestion.
  EXPECT_EQ(Row(*laptop, "1B").quantized_training_format, WeightFormat::kNone);
  // An 8 GB GPU: 7B QLoRA on a 4-bit base.
  HardwareProfile profile = CpuMachine(32 * kGiB);
  GpuInfo gpu;
  gpu.name = "NVIDIA GeForce RTX 3070";
  gpu.vram_total_bytes = 8 * kGiB;
  profile.gpus = {gpu};
  absl::StatusOr<Advice> small_gpu = AdviseModels(profile, AdvisorOptions{});
  ASSERT_OK(small_gpu);
  const WeightFormat format = Row(*small_gpu, "7B").quantized_training_format;
  EXPECT_TRUE(format == WeightFormat::kQ4 || format == WeightFormat::kNf4)
      << WeightFormatName(format);
  EXPECT_EQ(small_gpu->largest_quantized_training_class, "7B");
  ProbeReport report;
  report.advice = *small_gpu;
  EXPECT_THAT(FormatProbeReportText(report),
              HasSubstr("with a quantized base (--quantize q8|q4|nf4)"));
}

TEST(AdviseModelsTest, HeadroomIsKeptFree) {
  AdvisorOptions options;
  options.headroom_bytes = 12 * kGiB;
  absl::StatusOr<Advice> advice = AdviseModels(CpuMachine(16 * kGiB), options);
  ASSERT_OK(advice);
  EXPECT_EQ(advice->budget_bytes, 4 * kGiB);
  // 1B fits only with gradient checkpointing in 4 GiB.
  EXPECT_EQ(advice->largest_training_class, "1B");
  EXPECT_TRUE(Row(*advice, "1B").training_needs_checkpointing);
  options.headroom_bytes = 14 * kGiB;
  advice = AdviseModels(CpuMachine(16 * kGiB), options);
  ASSERT_OK(advice);
  EXPECT_EQ(advice->largest_training_class, "");
  options.headroom_bytes = 32 * kGiB;  // more than the machine has
  advice = AdviseModels(CpuMachine(16 * kGiB), options);
  ASSERT_OK(advice);
  EXPECT_EQ(advice->budget_bytes, 0u);
  EXPECT_EQ(advice->largest_inference_class, "");
}

TEST(AdviseModelsTest, UsesTheLargestGpuAndItsVram) {
  HardwareProfile profile = CpuMachine(64 * kGiB);
  GpuInfo small;
  small.name = "small";
  small.index = 0;
  small.vram_total_bytes = 8 * kGiB;
  GpuInfo big;
  big.name = "NVIDIA A100-SXM4-80GB";
  big.index = 1;
  big.vram_total_bytes = 80 * kGiB;
  profile.gpus = {small, big};
  absl::StatusOr<Advice> advice = AdviseModels(profile, AdvisorOptions{});
  ASSERT_OK(advice);
  EXPECT_EQ(advice->device, "cuda:1 (NVIDIA A100-SXM4-80GB)");
  EXPECT_EQ(advice->budget_bytes, 80 * kGiB - 512 * kMiB);
  // In bf16 without quantization, one 80 GB card serves 33B and fine-tunes 13B
  // as is; 33B training (65 GB of weights) fits only with gradient
  // checkpointing, and 70B inference needs 140 GB.
  EXPECT_EQ(advice->largest_inference_class, "30B");
  EXPECT_EQ(advice->largest_training_class, "30B");
  EXPECT_FALSE(Row(*advice, "13B").training_needs_checkpointing);
  EXPECT_TRUE(Row(*advice, "30B").training_needs_checkpointing);
  EXPECT_FALSE(Row(*advice, "70B").inference_fits);
}

TEST(AdviseModelsTest, TooSmallGpuFallsBackToRam) {
  HardwareProfile profile = CpuMachine(32 * kGiB);
  GpuInfo tiny;
  tiny.vram_total_bytes = 2 * kGiB;
  profile.gpus = {tiny};
  absl::StatusOr<Advice> advice = AdviseModels(profile, AdvisorOptions{});
  ASSERT_OK(advice);
  EXPECT_EQ(advice->device, "cpu");
  EXPECT_EQ(advice->budget_bytes, 28 * kGiB);
}

TEST(ProbeReportTest, TextAndJsonCarryTheSameFacts) {
  ProbeReport report;
  report.profile = CpuMachine(16 * kGiB);
  report.profile.notes.push_back("no NVIDIA GPU: test");
  report.tier = Tier::kCpu;
  report.backends.torch_version = "1.13.0";
  report.backends.cpu_threads = 8;
  lora::GemmMeasurement gemm;
  gemm.device = "cpu";
  gemm.dtype = DType::kBFloat16;
  gemm.size = 2048;
  gemm.gflops = 1234.5;
  report.gemm.push_back(gemm);
  report.advice = *AdviseModels(report.profile, report.advisor_options);

  const std::string text = FormatProbeReportText(report);
  EXPECT_THAT(text, HasSubstr("Test CPU"));
  EXPECT_THAT(text, HasSubstr("8 physical, 16 logical"));
  EXPECT_THAT(text, HasSubstr("tier       cpu"));
  EXPECT_THAT(text, HasSubstr("bfloat16 2048x2048: 1234.5 GFLOP/s"));
  EXPECT_THAT(text, HasSubstr("TinyLlama-1.1B"));
  EXPECT_THAT(text, HasSubstr("inference 3B, LoRA fine-tuning 3B"));
  EXPECT_THAT(text, HasSubstr("with gradient checkpointing"));
  EXPECT_THAT(text, HasSubstr("4.0 GiB kept free"));

  const nlohmann::json json =
      nlohmann::json::parse(FormatProbeReportJson(report));
  EXPECT_EQ(json["tier"], "cpu");
  EXPECT_EQ(json["cpu"]["physical_cores"], 8);
  EXPECT_EQ(json["memory"]["total_bytes"], 16 * kGiB);
  EXPECT_EQ(json["gemm"][0]["gflops"], 1234.5);
  EXPECT_EQ(json["advisor"]["largest_training_class"], "3B");
  EXPECT_EQ(json["advisor"]["models"][1]["training_needs_checkpointing"], true);
  EXPECT_EQ(json["advisor"]["headroom_bytes"], 4 * kGiB);
  EXPECT_EQ(json["advisor"]["models"].size(), report.advice.rows.size());
  EXPECT_EQ(json["notes"][0], "no NVIDIA GPU: test");
}

}  // namespace
}  // namespace openforce::worker
