// SPDX-License-Identifier: Apache-2.0
// Audit store and audit stream throughput: appends per second (durable and not, by batch
// size), verify per second, and end-to-end push to a real `agentcage collector` process
// over loopback (acknowledged = durably stored at the collector).
// Usage: audit_bench [N]   (N scales the event counts; default 100000)
#include <fmt/format.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "core/store/store.h"
#include "support/subprocess.h"

using namespace agentcage;
using Clock = std::chrono::steady_clock;

namespace {

v1::Event sample(uint64_t i) {
  v1::Event ev;
  ev.set_node("bench-node");
  ev.set_time_ns(1'700'000'000'000'000'000ull + i);
  ev.set_sandbox_id("5f3c9a0e1b2d4c6f");
  auto* p = ev.mutable_process();
  p->set_pid(4000 + static_cast<uint32_t>(i % 1000));
  p->set_binary("/usr/bin/python3");
  p->add_argv("python3");
  p->add_argv("agent.py");
  p->set_exec_id("b7e1c2d3:123456:4000");
  if (i % 10 == 0) {
    auto* v = ev.mutable_violation();
    v->set_mechanism("landlock");
    v->set_rule("filesystem.deny: ~/.ssh");
    v->set_action("deny");
    v->mutable_file()->set_op("open");
    v->mutable_file()->set_path("/root/.ssh/id_ed25519");
  } else {
    auto* f = ev.mutable_file();
    f->set_op("open");
    f->set_path("/work/repo/src/main.py");
    f->set_path_resolved(true);
  }
  return ev;
}

double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string fresh(const std::string& dir, const std::string& name) {
  std::string p = dir + "/" + name;
  for (auto s : {"", "-wal", "-shm"}) std::filesystem::remove(p + s);
  return p;
}

void bench_append(const std::string& dir, bool durable, size_t batch, uint64_t n) {
  core::StoreOptions o;
  o.durable = durable;
  auto s = core::EventStore::open(fresh(dir, "append.db"), o);
  if (!s) {
    fprintf(stderr, "%s\n", s.error().message().c_str());
    exit(1);
  }
  std::vector<v1::Event> evs;
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n;) {
    evs.clear();
    for (size_t k = 0; k < batch && i < n; ++k, ++i) evs.push_back(sample(i));
    if (auto r = (*s)->append_batch(evs); !r) {
      fprintf(stderr, "%s\n", r.error().message().c_str());
      exit(1);
    }
  }
  double t = seconds(t0);
  printf("append  %-8s batch %-5zu %8lu events  %10.0f events/s\n", durable ? "durable" : "normal", batch, n,
         static_cast<double>(n) / t);
  t0 = Clock::now();
  auto rep = (*s)->verify();
  if (batch >= 100 && rep && rep->ok)
    printf("verify                   %8lu events  %10.0f events/s\n", rep->checked,
           static_cast<double>(rep->checked) / seconds(t0));
}

void bench_push(const std::string& dir, uint64_t n) {
  std::string db = fresh(dir, "node.db");
  {
    core::StoreOptions o;
    o.durable = false;
    auto s = core::EventStore::open(db, o);
    std::vector<v1::Event> evs;
    for (uint64_t i = 0; i < n;) {
      evs.clear();
      for (size_t k = 0; k < 1000 && i < n; ++k, ++i) evs.push_back(sample(i));
      if (!(*s)->append_batch(evs)) exit(1);
    }
  }
  std::string cdb = fresh(dir, "collector.db");
  std::string log = dir + "/collector.log";
  pid_t c = testing::start({AGENTCAGE_BIN, "collector", "--listen", "127.0.0.1:0", "--db", cdb, "--insecure", "--insecure-accept-any-node"}, log);
  int port = 0;
  for (int i = 0; i < 200 && !port; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream f(log);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::smatch m;
    if (std::regex_search(text, m, std::regex("listening on 127\\.0\\.0\\.1:([0-9]+)"))) port = std::stoi(m[1]);
  }
  if (!port) {
    fprintf(stderr, "collector did not start\n");
    exit(1);
  }
  for (const char* what : {"--all", ""}) {
    if (*what == '\0') {  // second round: violations only, from a fresh collector position
      kill(c, SIGTERM);
      testing::wait_status(c);
      cdb = fresh(dir, "collector.db");
      c = testing::start({AGENTCAGE_BIN, "collector", "--listen", fmt::format("127.0.0.1:{}", port), "--db", cdb,
                          "--insecure"},
                         log);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    std::vector<std::string> argv{AGENTCAGE_BIN, "audit", "push", "--db", db, "--endpoint",
                                  fmt::format("127.0.0.1:{}", port), "--insecure", "--once", "--timeout", "600",
                                  "--node", "bench-node"};
    if (*what) argv.push_back(what);
    auto t0 = Clock::now();
    auto r = testing::run(argv, std::chrono::seconds(600));
    double t = seconds(t0);
    if (r.status != 0) {
      fprintf(stderr, "push failed: %s\n", r.err.c_str());
      exit(1);
    }
    uint64_t shipped = *what ? n : n / 10;
    printf("push    %-19s %8lu events  %10.0f events/s  (loopback, plaintext, durable collector; %.2f s incl. "
           "process start)\n",
           *what ? "all events" : "violations only", shipped, static_cast<double>(shipped) / t, t);
  }
  kill(c, SIGTERM);
  testing::wait_status(c);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n = argc > 1 ? std::stoull(argv[1]) : 100000;
  std::string dir = testing::temp_dir();
  printf("audit store and stream benchmark (N=%lu, dir %s)\n", n, dir.c_str());
  bench_append(dir, true, 1, std::max<uint64_t>(n / 50, 100));
  bench_append(dir, true, 100, n);
  bench_append(dir, true, 1000, n);
  bench_append(dir, false, 1, n / 10);
  bench_append(dir, false, 1000, n);
  bench_push(dir, n);
  std::filesystem::remove_all(dir);
  return 0;
}
