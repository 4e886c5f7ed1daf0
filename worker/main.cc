// openforce-worker: the volunteer's binary. Subcommands:
//   probe   print this machine's hardware profile, tier and model advisor
//   infer   generate text locally, offline, with a model and an optional PEFT
//   adapter
//   run     donate: register with a coordinator and train leased work units
//   pull    download and verify a published adapter
// Flags may also come from a JSON config file (--config); the command line
// wins.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/byte_size.h"
#include "common/command_line.h"
#include "common/config_file.h"
#include "common/file_util.h"
#include "common/hardware_profile.h"
#include "common/secret_token.h"
#include "common/status_macros.h"
#include "common/termination_signals.h"
#include "common/tier.h"
#include "lora/blas_core.h"
#include "lora/compute_device.h"
#include "proto/channel.h"
#include "worker/chat_template_command.h"
#include "worker/donation_policy.h"
#include "worker/infer_command.h"
#include "worker/probe_report.h"
#include "worker/pull_command.h"
#include "worker/serve_command.h"
#include "worker/tokenize_command.h"
#include "worker/work_loop.h"
#include "worker/worker_status.h"

ABSL_FLAG(std::string, config, "",
          "JSON config file whose keys are this binary's flag names");
ABSL_FLAG(bool, json, false, "print machine-readable JSON instead of text");
ABSL_FLAG(openforce::ByteSize, headroom,
          openforce::ByteSize{4 * openforce::kGiB},
          "RAM kept free for the owner's other programs (e.g. 4GiB)");
ABSL_FLAG(openforce::ByteSize, gpu_reserve,
          openforce::ByteSize{512 * openforce::kMiB},
          "VRAM kept free on a GPU for the desktop and driver");
ABSL_FLAG(int, threads, 0, "libtorch CPU threads; 0 uses every physical core");
ABSL_FLAG(bool, measure, true, "measure fp32 and bf16 GEMM rates during probe");
ABSL_FLAG(std::string, model, "", "infer: Hugging Face model directory");
ABSL_FLAG(std::string, adapter, "", "infer: PEFT adapter directory (optional)");
ABSL_FLAG(std::string, prompt, "",
          "infer: prompt text (needs the model's tokenizer)");
ABSL_FLAG(std::vector<std::string>, prompt_ids, {},
          "infer: prompt token ids, e.g. 1,2,3");
ABSL_FLAG(int64_t, max_new_tokens, 64, "infer: tokens to generate at most");
ABSL_FLAG(bool, greedy, false,
          "infer: argmax decoding (the default without --temperature)");
ABSL_FLAG(double, temperature, 0, "infer: sampling temperature; > 0 samples");
ABSL_FLAG(int64_t, top_k, 0,
          "infer: keep the k most likely tokens; 0 keeps all");
ABSL_FLAG(double, top_p, 1.0, "infer: nucleus sampling threshold");
ABSL_FLAG(double, repetition_penalty, 1.0, "infer: > 1 discourages repeats");
ABSL_FLAG(uint64_t, seed, 0, "infer: sampling seed");
ABSL_FLAG(std::string, device, "cpu",
          "infer: cpu or cuda[:N] (ROCm GPUs appear as cuda)");
ABSL_FLAG(
    std::string, dtype, "auto",
    "infer: auto (config.json's torch_dtype), float32, bfloat16 or float16");
ABSL_FLAG(bool, interactive, false,
          "infer: chat: read prompts from standard input, one per line, and "
          "stream each reply (/quit ends)");
ABSL_FLAG(std::string, quantize, "none",
          "infer, serve: quantize the base projections at load: none, q8 "
          "(8.5 bits per weight), q4 (4.5) or nf4 (4.13); adapters run "
          "unmerged on a quantized base");
ABSL_FLAG(bool, quantize_embeddings, false,
          "infer, serve with --quantize: quantize the token embeddings and the "
          "output head too (a large vocabulary's head is a fifth of a 1B "
          "model's bytes per token)");
ABSL_FLAG(bool, quantized_cache, false,
          "infer, serve with --quantize: write the quantized weights next to "
          "the model (openforce-quantized-<format>.safetensors) so the next "
          "load maps them; a cache that matches the model is always read");
ABSL_FLAG(bool, merge_adapter, false,
          "infer: merge the adapter into the weights first");
ABSL_FLAG(std::string, coordinator, "127.0.0.1:7443",
          "run, pull: the coordinator's address");
ABSL_FLAG(std::string, tls_ca, "",
          "run, pull: PEM CA certificate that signed the coordinator's");
ABSL_FLAG(bool, insecure, false,
          "run, pull: allow plaintext to a non-loopback coordinator");
ABSL_FLAG(std::string, data, "",
          "run: the worker's directory (identity key, caches, checkpoints)");
ABSL_FLAG(std::string, enrollment_token_file, "",
          "run: file holding the coordinator's enrollment token");
ABSL_FLAG(std::string, name, "", "run: a display name for operators");
ABSL_FLAG(openforce::ByteSize, max_memory, openforce::ByteSize{0},
          "run: most RAM a unit may use (e.g. 8GiB); 0: available minus "
          "headroom");
ABSL_FLAG(openforce::ByteSize, max_vram, openforce::ByteSize{0},
          "run: most VRAM a unit may use on a GPU (e.g. 6GiB); 0: free VRAM "
          "minus --gpu-reserve");
ABSL_FLAG(int, max_units, 0,
          "run: exit after delivering this many units (0: run until stopped)");
ABSL_FLAG(double, max_other_cpu, 0.25,
          "run: pause while other programs use more than this share of the "
          "CPU (0..1; 1 never pauses for load)");
ABSL_FLAG(absl::Duration, idle_for, absl::Minutes(1),
          "run: the machine must have been idle this long before work starts "
          "or resumes (e.g. 5m, 0s)");
ABSL_FLAG(std::vector<std::string>, donation_hours, {},
          "run: work only inside these local-time windows, e.g. "
          "22:00-07:00,12:00-13:00 (default: any time)");
ABSL_FLAG(bool, work_on_battery, false, "run: keep working on battery power");
ABSL_FLAG(double, max_other_gpu, 0.10,
          "run: on a GPU, wait while other programs use more than this share "
          "of it (NVML)");
ABSL_FLAG(std::string, status_file, "",
          "run, status: the live status file (default DATA/status.json)");
ABSL_FLAG(std::string, job, "", "pull: the job whose adapter to download");
ABSL_FLAG(uint64_t, version, 0, "pull: adapter version (0: the latest)");
ABSL_FLAG(std::string, coordinator_key, "",
          "pull: the coordinator's public key (PEM) to verify against");
ABSL_FLAG(std::string, out, "", "pull: directory for the PEFT files");
ABSL_FLAG(std::string, listen, "127.0.0.1:8080",
          "serve: host:port to listen on (port 0 picks a free one)");
ABSL_FLAG(std::string, api_key_file, "",
          "serve: file holding the API key clients send as 'Authorization: "
          "Bearer KEY'; required off loopback");
ABSL_FLAG(std::vector<std::string>, adapters, {},
          "serve: NAME=DIR,... adapters served next to the base model, each "
          "as model id NAME");
ABSL_FLAG(std::string, system, "",
          "infer --interactive: the system prompt of the conversation");
ABSL_FLAG(bool, raw, false,
          "infer --interactive: send each line as raw text, without the "
          "model's chat template");
ABSL_FLAG(std::string, conversation, "",
          "chat-template: JSON file with messages (and tools, "
          "add_generation_prompt, template variables); - reads stdin");
ABSL_FLAG(bool, add_special_tokens, false,
          "tokenize: add the model's special tokens (bos, template)");
ABSL_FLAG(bool, decode, false, "tokenize: read token ids, print the text");
ABSL_FLAG(bool, skip_special_tokens, false,
          "tokenize --decode: leave special tokens out of the text");
ABSL_FLAG(bool, jsonl, false,
          "tokenize: one JSON string (or id array) per input line, one JSON "
          "result per output line");

namespace openforce::worker {
namespace {

constexpr char kUsage[] =
    "openforce-worker: donate this machine's idle time to community LoRA "
    "fine-tunes.\n"
    "\n"
    "usage: openforce-worker <command> [flags]\n"
    "commands:\n"
    "  probe   print the hardware profile, tier and the largest models this "
    "machine\n"
    "          can run (--json for scripts, --headroom to keep RAM free)\n"
    "  run --coordinator ADDR --data DIR [--enrollment-token-file F]\n"
    "          donate this machine: train leased units until SIGTERM\n"
    "  status --data DIR [--json]\n"
    "          what a running worker is doing\n"
    "  pull --coordinator ADDR --job ID --coordinator-key FILE --out DIR\n"
    "          download and verify a published adapter (PEFT files)\n"
    "  infer --model DIR [--adapter DIR] (--prompt TEXT | --interactive)\n"
    "          generate locally, with no network; --interactive chats;\n"
    "          --quantize q8|q4|nf4 shrinks the base weights 3.8-7.7x\n"
    "          (--quantized-cache keeps them next to the model for next "
    "time;\n"
    "          --quantize-embeddings quantizes the embeddings and head too)\n"
    "  serve --model DIR [--adapters NAME=DIR,...] [--listen HOST:PORT]\n"
    "          OpenAI-compatible HTTP API (/v1/chat/completions, "
    "/v1/completions,\n"
    "          /v1/models, /health) on this machine\n"
    "  chat-template --model DIR --conversation FILE [--json]\n"
    "          print the prompt the model's chat template makes, and its ids\n"
    "  tokenize --model DIR [--add-special-tokens] [--json | --jsonl]\n"
    "          print the ids of the text on standard input; with --decode\n"
    "          [--skip-special-tokens], the text of the ids\n";

const std::vector<std::string> kConfigKeys = {"headroom",
                                              "gpu_reserve",
                                              "threads",
                                              "measure",
                                              "json",
                                              "coordinator",
                                              "tls_ca",
                                              "insecure",
                                              "data",
                                              "enrollment_token_file",
                                              "name",
                                              "max_memory",
                                              "device",
                                              "max_other_cpu",
                                              "idle_for",
                                              "donation_hours",
                                              "work_on_battery",
                                              "max_other_gpu",
                                              "status_file",
                                              "max_units",
                                              "max_vram"};

TransportOptions Transport() {
  TransportOptions transport;
  transport.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  transport.insecure = absl::GetFlag(FLAGS_insecure);
  return transport;
}

v1::HardwareProfile ProfileToProto(const HardwareProfile& probed, Tier tier,
                                   const lora::ComputeBackends& backends,
                                   uint64_t max_memory, uint64_t headroom) {
  v1::HardwareProfile out;
  out.set_tier(static_cast<v1::Tier>(static_cast<int>(tier)));
  out.set_cpu_model(probed.cpu.model);
  out.set_physical_cores(probed.cpu.physical_cores);
  out.set_logical_cores(probed.cpu.logical_cores);
  out.set_avx2(probed.cpu.avx2);
  out.set_avx512f(probed.cpu.avx512f);
  out.set_avx512_bf16(probed.cpu.avx512_bf16);
  out.set_amx(probed.cpu.amx_bf16);
  uint64_t total = probed.memory.total_bytes;
  uint64_t available = probed.memory.available_bytes;
  if (max_memory > 0) {
    // The owner's cap is what this machine offers, so the coordinator sees
    // it as such.
    total = std::min(total, max_memory + headroom);
    available = std::min(available, max_memory + headroom);
  }
  out.set_ram_total_bytes(total);
  out.set_ram_available_bytes(available);
  for (const GpuInfo& gpu : probed.gpus) {
    v1::GpuDevice* device = out.add_gpus();
    device->set_backend(gpu.vendor == GpuVendor::kNvidia ? v1::BACKEND_CUDA
                                                         : v1::BACKEND_ROCM);
    device->set_index(gpu.index);
    device->set_name(gpu.name);
    device->set_vram_total_bytes(gpu.vram_total_bytes);
    device->set_vram_free_bytes(gpu.vram_free_bytes);
  }
  out.add_backends(v1::BACKEND_CPU);
  if (backends.gpu_devices > 0)
    out.add_backends(backends.gpu_is_rocm ? v1::BACKEND_ROCM
                                          : v1::BACKEND_CUDA);
  out.set_headroom_bytes(headroom);
  out.set_torch_version(backends.torch_version);
  return out;
}

absl::Status RunWork() {
  // SIGINT/SIGTERM end training at the next step. They are blocked before
  // libtorch, OpenMP or gRPC start threads (which inherit the mask), so only
  // the waiting thread below ever receives them.
  const sigset_t signals = BlockTerminationSignals();
  RETURN_IF_ERROR(lora::SetCpuThreads(absl::GetFlag(FLAGS_threads)));
  WorkLoopOptions options;
  options.coordinator = absl::GetFlag(FLAGS_coordinator);
  options.transport = Transport();
  options.data_dir = absl::GetFlag(FLAGS_data);
  if (options.data_dir.empty())
    return absl::InvalidArgumentError("--data DIR is required");
  if (const std::string file = absl::GetFlag(FLAGS_enrollment_token_file);
      !file.empty()) {
    ASSIGN_OR_RETURN(options.enrollment_token, ReadTokenFile(file));
  }
  options.display_name = absl::GetFlag(FLAGS_name);
  options.max_memory_bytes = absl::GetFlag(FLAGS_max_memory).bytes;
  options.device = absl::GetFlag(FLAGS_device);
  options.max_units = absl::GetFlag(FLAGS_max_units);
  options.max_vram_bytes = absl::GetFlag(FLAGS_max_vram).bytes;
  options.gpu_reserve_bytes = absl::GetFlag(FLAGS_gpu_reserve).bytes;
  options.status_file = absl::GetFlag(FLAGS_status_file);
  options.policy.max_other_cpu = absl::GetFlag(FLAGS_max_other_cpu);
  if (!(options.policy.max_other_cpu >= 0 && options.policy.max_other_cpu <= 1))
    return absl::InvalidArgumentError("--max-other-cpu must be in 0..1");
  options.policy.idle_for = absl::GetFlag(FLAGS_idle_for);
  if (options.policy.idle_for < absl::ZeroDuration())
    return absl::InvalidArgumentError("--idle-for must not be negative");
  for (const std::string& window : absl::GetFlag(FLAGS_donation_hours)) {
    ASSIGN_OR_RETURN(TimeWindow parsed, ParseTimeWindow(window));
    options.policy.windows.push_back(parsed);
  }
  options.policy.work_on_battery = absl::GetFlag(FLAGS_work_on_battery);
  options.policy.headroom_bytes = absl::GetFlag(FLAGS_headroom).bytes;
  options.policy.max_other_gpu = absl::GetFlag(FLAGS_max_other_gpu);
  options.monitor.watch_gpu = options.device != "cpu";
  ASSIGN_OR_RETURN(HardwareProfile probed, ProbeHardware());
  const uint64_t headroom = absl::GetFlag(FLAGS_headroom).bytes;
  options.profile =
      ProfileToProto(probed, ClassifyTier(probed), lora::ProbeComputeBackends(),
                     options.max_memory_bytes, headroom);
  if (absl::GetFlag(FLAGS_measure)) {
    lora::GemmOptions gemm;
    gemm.device = options.device == "cpu" ? "cpu" : "cuda";
    gemm.min_seconds = 0.2;
    absl::StatusOr<lora::GemmMeasurement> measured =
        lora::MeasureGemmPeak(gemm);
    if (measured.ok())
      options.profile.set_measured_gflops_fp32(measured->gflops);
  }

  absl::Notification stop;
  std::thread waiter([&] {
    const int received = WaitForTerminationSignal(signals);
    if (!stop.HasBeenNotified()) {
      std::cout << "openforce-worker: signal " << received
                << ", stopping at the next step" << std::endl;
      stop.Notify();
    }
  });
  absl::Status status = RunWorkLoop(options, &stop, std::cout);
  if (!stop.HasBeenNotified()) {
    stop.Notify();
    pthread_kill(waiter.native_handle(), SIGTERM);  // wake the waiting thread
  }
  waiter.join();
  return status;
}

absl::Status RunStatus() {
  std::string path = absl::GetFlag(FLAGS_status_file);
  if (path.empty()) {
    if (absl::GetFlag(FLAGS_data).empty()) {
      return absl::InvalidArgumentError(
          "give --data DIR of the worker (or --status-file FILE)");
    }
    path = StatusFilePath(absl::GetFlag(FLAGS_data));
  }
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(absl::StrCat(
        "no worker status at ", path, ": the worker has never run there"));
  }
  RETURN_IF_ERROR(text.status());
  ASSIGN_OR_RETURN(WorkerStatusSnapshot status, StatusFromJson(*text, path));
  // A status file outlives its worker; say so rather than show stale work.
  const bool alive =
      status.pid > 0 && kill(static_cast<pid_t>(status.pid), 0) == 0;
  const int64_t age_ms = absl::ToUnixMillis(absl::Now()) - status.updated_at_ms;
  if (!alive || age_ms > 10'000) {
    if (status.state != "stopped") {
      status.reason = absl::StrCat("last update ", age_ms / 1000,
                                   " s ago; was ", status.state);
    }
    status.state = "not running";
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << StatusToJson(status);
  } else {
    std::cout << FormatStatusLine(status) << "\n"
              << "  worker "
              << (status.worker_id.empty() ? "-" : status.worker_id) << " at "
              << status.coordinator << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunPull() {
  PullRequest request;
  request.coordinator = absl::GetFlag(FLAGS_coordinator);
  request.transport = Transport();
  request.job_id = absl::GetFlag(FLAGS_job);
  request.version = absl::GetFlag(FLAGS_version);
  request.coordinator_key_file = absl::GetFlag(FLAGS_coordinator_key);
  request.out_dir = absl::GetFlag(FLAGS_out);
  ASSIGN_OR_RETURN(v1::SignedAdapter adapter, PullAdapter(request));
  std::cout << "pulled " << adapter.job_id() << " adapter version "
            << adapter.version() << " (" << adapter.sample_count()
            << " samples";
  if (auto loss = adapter.metrics().find("train_loss");
      loss != adapter.metrics().end()) {
    std::cout << ", train_loss " << loss->second;
  }
  std::cout << ") into " << request.out_dir
            << "\n  signature verified with the pinned coordinator key\n";
  return absl::OkStatus();
}

absl::Status RunProbe() {
  RETURN_IF_ERROR(lora::SetCpuThreads(absl::GetFlag(FLAGS_threads)));
  ProbeReport report;
  ASSIGN_OR_RETURN(report.profile, ProbeHardware());
  report.tier = ClassifyTier(report.profile);
  report.backends = lora::ProbeComputeBackends();
  if (absl::GetFlag(FLAGS_measure)) {
    const std::string device = report.backends.gpu_devices > 0 ? "cuda" : "cpu";
    for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
      lora::GemmOptions gemm;
      gemm.device = device;
      gemm.dtype = dtype;
      gemm.min_seconds = 0.3;
      ASSIGN_OR_RETURN(lora::GemmMeasurement measured,
                       lora::MeasureGemmPeak(gemm));
      report.gemm.push_back(measured);
    }
  }
  report.advisor_options.headroom_bytes = absl::GetFlag(FLAGS_headroom).bytes;
  report.advisor_options.gpu_reserve_bytes =
      absl::GetFlag(FLAGS_gpu_reserve).bytes;
  ASSIGN_OR_RETURN(report.advice,
                   AdviseModels(report.profile, report.advisor_options));
  std::cout << (absl::GetFlag(FLAGS_json) ? FormatProbeReportJson(report) + "\n"
                                          : FormatProbeReportText(report));
  return absl::OkStatus();
}

absl::Status RunServe() {
  const sigset_t signals = BlockTerminationSignals();
  RETURN_IF_ERROR(lora::SetCpuThreads(absl::GetFlag(FLAGS_threads)));
  ServeOptions options;
  options.model.model_dir = absl::GetFlag(FLAGS_model);
  if (options.model.model_dir.empty())
    return absl::InvalidArgumentError("--model is required");
  options.model.device = absl::GetFlag(FLAGS_device);
  options.model.dtype = absl::GetFlag(FLAGS_dtype);
  ASSIGN_OR_RETURN(options.model.quantize,
                   ParseWeightFormat(absl::GetFlag(FLAGS_quantize)));
  options.model.write_quantized_cache = absl::GetFlag(FLAGS_quantized_cache);
  options.model.quantize_embeddings = absl::GetFlag(FLAGS_quantize_embeddings);
  options.model.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  for (const std::string& entry : absl::GetFlag(FLAGS_adapters)) {
    const size_t equals = entry.find('=');
    if (equals == std::string::npos || equals == 0 ||
        equals + 1 == entry.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--adapters entry '", entry, "' is not NAME=DIR"));
    }
    const std::string name = entry.substr(0, equals);
    const std::string dir = entry.substr(equals + 1);
    RETURN_IF_ERROR(CheckAdapterBaseModel(dir, options.model.model_dir));
    options.model.named_adapters[name] = dir;
  }
  options.listen = absl::GetFlag(FLAGS_listen);
  if (const std::string file = absl::GetFlag(FLAGS_api_key_file);
      !file.empty()) {
    ASSIGN_OR_RETURN(options.api_key, ReadTokenFile(file));
  }
  std::atomic<bool> stop{false};
  std::thread waiter([&] {
    WaitForTerminationSignal(signals);
    stop = true;
  });
  absl::Status status =
      RunServer(options, stop, [](const std::string& address) {
        std::cout << "openforce-worker serve: listening on http://" << address
                  << std::endl;
      });
  if (!stop.load()) pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  return status;
}

absl::Status RunChatTemplate() {
  ChatTemplateOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.conversation_path = absl::GetFlag(FLAGS_conversation);
  options.json = absl::GetFlag(FLAGS_json);
  return RunChatTemplateCommand(options, std::cin, std::cout);
}

absl::Status RunTokenize() {
  TokenizeOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.add_special_tokens = absl::GetFlag(FLAGS_add_special_tokens);
  options.decode = absl::GetFlag(FLAGS_decode);
  options.skip_special_tokens = absl::GetFlag(FLAGS_skip_special_tokens);
  options.json = absl::GetFlag(FLAGS_json);
  options.jsonl = absl::GetFlag(FLAGS_jsonl);
  return RunTokenizeCommand(options, std::cin, std::cout);
}

absl::Status RunInfer(const std::set<std::string>& named_on_command_line) {
  RETURN_IF_ERROR(lora::SetCpuThreads(absl::GetFlag(FLAGS_threads)));
  lora::InferenceRequest request;
  request.model_dir = absl::GetFlag(FLAGS_model);
  if (request.model_dir.empty())
    return absl::InvalidArgumentError("--model is required");
  request.adapter_dir = absl::GetFlag(FLAGS_adapter);
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  const std::vector<std::string> prompt_ids = absl::GetFlag(FLAGS_prompt_ids);
  const bool interactive = absl::GetFlag(FLAGS_interactive);
  if (interactive && (!prompt.empty() || !prompt_ids.empty())) {
    return absl::InvalidArgumentError(
        "--interactive reads prompts from standard input; drop --prompt and "
        "--prompt-ids");
  }
  if (!interactive && prompt.empty() == prompt_ids.empty()) {
    return absl::InvalidArgumentError(
        "give exactly one of --prompt or --prompt-ids");
  }
  if (!prompt.empty()) request.prompt_text = prompt;
  ASSIGN_OR_RETURN(request.prompt_ids, ParseTokenIds(prompt_ids));
  request.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  const double temperature = absl::GetFlag(FLAGS_temperature);
  const bool sampling_flags = named_on_command_line.count("temperature") ||
                              named_on_command_line.count("top_k") ||
                              named_on_command_line.count("top_p");
  if (absl::GetFlag(FLAGS_greedy) && sampling_flags) {
    return absl::InvalidArgumentError(
        "--greedy cannot be combined with --temperature, --top-k or --top-p");
  }
  if (sampling_flags && !(temperature > 0)) {
    return absl::InvalidArgumentError("sampling needs --temperature > 0");
  }
  // No sampling flag at all: the model's generation_config.json decides.
  request.sampling_from_model =
      !sampling_flags && !named_on_command_line.count("greedy") &&
      !named_on_command_line.count("repetition_penalty");
  request.sampling.greedy = !(temperature > 0);
  request.sampling.temperature = temperature > 0 ? temperature : 1.0;
  request.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  request.sampling.top_p = absl::GetFlag(FLAGS_top_p);
  request.sampling.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  request.sampling.seed = absl::GetFlag(FLAGS_seed);
  request.device = absl::GetFlag(FLAGS_device);
  request.dtype = absl::GetFlag(FLAGS_dtype);
  ASSIGN_OR_RETURN(request.quantize,
                   ParseWeightFormat(absl::GetFlag(FLAGS_quantize)));
  request.write_quantized_cache = absl::GetFlag(FLAGS_quantized_cache);
  request.quantize_embeddings = absl::GetFlag(FLAGS_quantize_embeddings);
  request.merge_adapter = absl::GetFlag(FLAGS_merge_adapter);
  if (interactive) {
    if (absl::GetFlag(FLAGS_json))
      return absl::InvalidArgumentError(
          "--json does not apply to --interactive");
    ChatOptions chat;
    chat.system = absl::GetFlag(FLAGS_system);
    chat.raw = absl::GetFlag(FLAGS_raw);
    chat.prompt_marks = isatty(STDIN_FILENO) != 0;
    return RunChat(request, chat, std::cin, std::cout);
  }
  return RunInferCommand(request, absl::GetFlag(FLAGS_json), std::cout);
}

int Main(int argc, char** argv) {
  lora::RelaunchWithTunedOpenBlas(argv);
  absl::SetProgramUsageMessage(kUsage);
  ArgvBuffer normalized(NormalizeFlagNames(argc, argv));
  std::vector<char*> args =
      absl::ParseCommandLine(normalized.argc(), normalized.argv());
  const std::set<std::string> named =
      FlagsNamedOnCommandLine(normalized.argc(), normalized.argv());
  if (const std::string config = absl::GetFlag(FLAGS_config); !config.empty()) {
    absl::Status applied = ApplyConfigFile(config, kConfigKeys, named);
    if (!applied.ok()) {
      std::cerr << "openforce-worker: " << applied.message() << "\n";
      return 2;
    }
  }
  if (args.size() < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string command = args[1];
  if (args.size() > 2) {
    std::cerr << "openforce-worker: unexpected argument '" << args[2] << "'\n";
    return 2;
  }
  absl::Status status;
  if (command == "probe") {
    status = RunProbe();
  } else if (command == "infer") {
    status = RunInfer(named);
  } else if (command == "run") {
    status = RunWork();
  } else if (command == "pull") {
    status = RunPull();
  } else if (command == "serve") {
    status = RunServe();
  } else if (command == "chat-template") {
    status = RunChatTemplate();
  } else if (command == "tokenize") {
    status = RunTokenize();
  } else if (command == "status") {
    status = RunStatus();
  } else {
    std::cerr << "openforce-worker: unknown command '" << command << "'\n\n"
              << kUsage;
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "openforce-worker " << command << ": " << status << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace openforce::worker

int main(int argc, char** argv) { return openforce::worker::Main(argc, argv); }
