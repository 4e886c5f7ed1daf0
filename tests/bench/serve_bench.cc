// Server benchmark: `openforce-worker serve` on a model directory (the demo's
// tiny model by default is what scripts/bench_serve.sh passes), streamed chat
// completions from 1 client, then from N concurrent clients. Prints total
// generated tokens/s and the time to first token (median and worst) for each,
// so the cost of sharing one generation thread is visible. Not a test.
// Usage: serve_bench --worker PATH --model DIR [--clients N] [--requests N]
//                    [--max-tokens N]
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  double first_token_seconds = 0;
  double seconds = 0;
  int tokens = 0;
};

Sample StreamOnce(const std::string& host, int port, int max_tokens, int seed) {
  httplib::Client client(host, port);
  client.set_read_timeout(300, 0);
  const nlohmann::json body = {
      {"messages", {{{"role", "user"}, {"content", "tell me a story"}}}},
      {"max_tokens", max_tokens},
      {"temperature", 0.8},
      {"seed", seed},
      {"stream", true}};
  Sample sample;
  const Clock::time_point start = Clock::now();
  bool first = true;
  std::string buffer;
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/chat/completions";
  request.body = body.dump();
  request.set_header("Content-Type", "application/json");
  request.content_receiver = [&](const char* data, size_t length, uint64_t,
                                 uint64_t) {
    buffer.append(data, length);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (event.rfind("data: {", 0) != 0) continue;
      const nlohmann::json chunk = nlohmann::json::parse(event.substr(6));
      const auto& delta = chunk["choices"][0]["delta"];
      if (delta.contains("content") &&
          !delta["content"].get<std::string>().empty()) {
        if (first) {
          sample.first_token_seconds =
              std::chrono::duration<double>(Clock::now() - start).count();
          first = false;
        }
        ++sample.tokens;
      }
    }
    return true;
  };
  client.send(request);
  sample.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return sample;
}

void Report(const char* label, const std::vector<Sample>& samples,
            double wall_seconds) {
  std::vector<double> ttft;
  int tokens = 0;
  for (const Sample& s : samples) {
    ttft.push_back(s.first_token_seconds);
    tokens += s.tokens;
  }
  std::sort(ttft.begin(), ttft.end());
  std::printf(
      "%-22s %4zu requests  %7.1f tokens/s total  first token: median "
      "%6.1f ms, worst %6.1f ms\n",
      label, samples.size(), tokens / wall_seconds, 1e3 * ttft[ttft.size() / 2],
      1e3 * ttft.back());
}

}  // namespace

int main(int argc, char** argv) {
  std::string worker, model;
  int clients = 4, requests = 8, max_tokens = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--worker"))
      worker = argv[i + 1];
    else if (!std::strcmp(argv[i], "--model"))
      model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--clients"))
      clients = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--requests"))
      requests = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--max-tokens"))
      max_tokens = std::atoi(argv[i + 1]);
  }
  if (worker.empty() || model.empty() || clients < 1 || requests < 1) {
    std::fprintf(stderr,
                 "usage: serve_bench --worker PATH --model DIR "
                 "[--clients N] [--requests N] [--max-tokens N]\n");
    return 2;
  }
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return 1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    execl(worker.c_str(), worker.c_str(), "serve", "--model", model.c_str(),
          "--listen", "127.0.0.1:0", "--threads", "1", nullptr);
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string line;
  char c;
  while (read(pipe_fds[0], &c, 1) == 1 && c != '\n') line += c;
  std::smatch match;
  if (!std::regex_search(line, match,
                         std::regex("http://([0-9.]+):([0-9]+)"))) {
    std::fprintf(stderr, "server did not start: %s\n", line.c_str());
    kill(pid, SIGTERM);
    return 1;
  }
  const std::string host = match[1];
  const int port = std::stoi(match[2]);
  StreamOnce(host, port, 4, 0);  // warm up

  std::vector<Sample> alone;
  Clock::time_point start = Clock::now();
  for (int r = 0; r < requests; ++r)
    alone.push_back(StreamOnce(host, port, max_tokens, r));
  Report("1 client", alone,
         std::chrono::duration<double>(Clock::now() - start).count());

  std::vector<std::vector<Sample>> per_client(clients);
  start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < requests; ++r)
        per_client[t].push_back(
            StreamOnce(host, port, max_tokens, t * 1000 + r));
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::vector<Sample> together;
  for (const auto& samples : per_client)
    together.insert(together.end(), samples.begin(), samples.end());
  const std::string label = std::to_string(clients) + " concurrent clients";
  Report(label.c_str(), together,
         std::chrono::duration<double>(Clock::now() - start).count());
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  return 0;
}
