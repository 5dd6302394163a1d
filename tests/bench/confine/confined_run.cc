// SPDX-License-Identifier: Apache-2.0
// Benchmark driver: runs a command through run_session exactly as `agentcage run` does,
// with a policy shaped like the shipped default profile (or none with --no-confine), so
// the cost of the enforcement stack can be measured before profiles are wired to the CLI.
//   confined_run [--no-confine] [--print-enforcement] -- cmd args...
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/sandbox/session.h"

int main(int argc, char** argv) {
  using namespace agentcage::core;
  bool confine = true, print = false;
  int i = 1;
  for (; i < argc && std::strcmp(argv[i], "--") != 0; ++i) {
    if (!std::strcmp(argv[i], "--no-confine")) confine = false;
    else if (!std::strcmp(argv[i], "--print-enforcement")) print = true;
    else {
      std::fprintf(stderr, "usage: confined_run [--no-confine] [--print-enforcement] -- cmd args...\n");
      return 2;
    }
  }
  if (i + 1 >= argc) {
    std::fprintf(stderr, "confined_run: no command\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::err);
  SessionOptions so;
  so.argv.assign(argv + i + 1, argv + argc);
  if (confine) {
    char cwd[4096];
    ConfinePolicy p;
    p.fs.read = {"/etc", "/proc", "/dev", "/sys"};
    p.fs.exec = {"/usr", "/bin", "/sbin", "/lib", "/lib64", "/opt"};
    p.fs.write = {::getcwd(cwd, sizeof cwd) ? cwd : "/tmp", "/tmp", "/dev/null", "/dev/tty", "/dev/pts", "/dev/ptmx"};
    p.fs.deny = {"/etc/shadow", "/etc/gshadow"};
    p.max_pids = 512;
    // The command's own directory (e.g. the build tree's syscall_bench) must be executable.
    std::string cmd = so.argv[0];
    if (cmd.find('/') != std::string::npos) {
      char real[4096];
      if (::realpath(cmd.c_str(), real)) {
        std::string r = real;
        p.fs.exec.push_back(r.substr(0, r.rfind('/')));
      }
    }
    // Ablation switches for measuring each layer (AGENTCAGE_BENCH_OFF=view,masks,pids,seccomp,landlock).
    if (const char* off = getenv("AGENTCAGE_BENCH_OFF")) {
      std::string o = off;
      if (o.find("view") != std::string::npos) p.fs.private_view = false;
      if (o.find("masks") != std::string::npos) p.fs.deny.clear();
      if (o.find("pids") != std::string::npos) p.max_pids = 0;
      if (o.find("seccomp") != std::string::npos) p.seccomp.builtin = false;
      if (o.find("landlock") != std::string::npos) {
        p.fs.restrict = false;
        p.scope_signals = p.scope_abstract_unix = false;
      }
    }
    so.confine = p;
  }
  auto r = run_session(so);
  if (!r) {
    std::fprintf(stderr, "confined_run: %s\n", r.error().message().c_str());
    return 1;
  }
  if (print)
    for (const auto& e : r->enforcement)
      std::fprintf(stderr, "%-10s %s%s\n", e.mechanism.c_str(), e.detail.c_str(), e.enforced ? "" : " (NOT enforced)");
  return r->exit_status;
}
