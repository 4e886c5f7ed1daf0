// tokenizer.json benchmark: for each tokenizer directory given, the load time
// and single-thread encode throughput (MB/s of UTF-8 input) over a corpus
// file, whose documents are separated by blank lines. The best of `--runs`
// passes is printed, with the token count so runs of different engines can be
// checked against each other. scripts/bench_tokenizers.sh builds a mixed
// corpus (prose, code, non-Latin scripts) and runs Hugging Face's Rust
// tokenizers (its Node binding) on the same file as the peer.
// Usage: tokenizer_bench --corpus FILE [--runs N] DIR...
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "lora/hf_tokenizer.h"

namespace openforce::lora {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<std::string> SplitDocuments(const std::string& text) {
  std::vector<std::string> documents;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) documents.push_back(text.substr(pos, end - pos));
    pos = end + 2;
  }
  return documents;
}

int Run(int argc, char** argv) {
  std::string corpus_path;
  int runs = 3;
  std::vector<std::string> dirs;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--corpus") == 0 && i + 1 < argc) {
      corpus_path = argv[++i];
    } else if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else {
      dirs.push_back(argv[i]);
    }
  }
  if (corpus_path.empty() || dirs.empty() || runs <= 0) {
    std::fprintf(stderr,
                 "usage: tokenizer_bench --corpus FILE [--runs N] DIR...\n");
    return 2;
  }
  absl::StatusOr<std::string> corpus = ReadFileToString(corpus_path);
  if (!corpus.ok()) {
    std::fprintf(stderr, "%s\n", corpus.status().ToString().c_str());
    return 1;
  }
  const std::vector<std::string> documents = SplitDocuments(*corpus);
  size_t bytes = 0;
  for (const std::string& document : documents) bytes += document.size();
  std::printf("corpus: %zu documents, %.2f MB\n", documents.size(),
              bytes / 1e6);
  for (const std::string& dir : dirs) {
    const Clock::time_point load_start = Clock::now();
    absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
        HfTokenizer::Load(dir);
    const double load_seconds = Seconds(load_start);
    if (!tokenizer.ok()) {
      std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
      return 1;
    }
    double best = 1e30;
    size_t tokens = 0;
    for (int run = 0; run < runs; ++run) {
      tokens = 0;
      const Clock::time_point start = Clock::now();
      for (const std::string& document : documents) {
        absl::StatusOr<std::vector<int64_t>> ids =
            (*tokenizer)->Encode(document, false);
        if (!ids.ok()) {
          std::fprintf(stderr, "%s\n", ids.status().ToString().c_str());
          return 1;
        }
        tokens += ids->size();
      }
      best = std::min(best, Seconds(start));
    }
    std::printf(
        "openforce %-40s load %7.1f ms  encode %6.2f MB/s  %zu tokens\n",
        dir.c_str(), load_seconds * 1e3, bytes / 1e6 / best, tokens);
  }
  return 0;
}

}  // namespace
}  // namespace openforce::lora

int main(int argc, char** argv) { return openforce::lora::Run(argc, argv); }
