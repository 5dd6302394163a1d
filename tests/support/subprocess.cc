// SPDX-License-Identifier: Apache-2.0
#include "support/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <sstream>

namespace agentcage::testing {
namespace {

std::vector<char*> cargv(const std::vector<std::string>& argv) {
  std::vector<char*> v;
  for (auto& a : argv) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

int shell_status(int ws) {
  if (WIFEXITED(ws)) return WEXITSTATUS(ws);
  if (WIFSIGNALED(ws)) return 128 + WTERMSIG(ws);
  return -1;
}

// A child starts with no signal blocked: a test that ran in-process code blocking
// SIGINT/SIGTERM (a session waiting for them) must not hand that mask to the processes
// later tests start and stop with those signals.
void unblock_signals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace

ProcResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  ProcResult r;
  int o[2], e[2];
  if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC)) return r;
  auto args = cargv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    unblock_signals();
    dup2(o[1], 1);
    dup2(e[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(o[1]);
  close(e[1]);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool open_o = true, open_e = true;
  while (open_o || open_e) {
    pollfd fds[2] = {{open_o ? o[0] : -1, POLLIN, 0}, {open_e ? e[0] : -1, POLLIN, 0}};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    int n = poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) break;
    char buf[65536];
    if (fds[0].revents) {
      ssize_t k = read(o[0], buf, sizeof buf);
      if (k <= 0) open_o = false; else r.out.append(buf, static_cast<size_t>(k));
    }
    if (fds[1].revents) {
      ssize_t k = read(e[0], buf, sizeof buf);
      if (k <= 0) open_e = false; else r.err.append(buf, static_cast<size_t>(k));
    }
  }
  close(o[0]);
  close(e[0]);
  int ws = 0;
  waitpid(pid, &ws, 0);
  r.status = shell_status(ws);
  return r;
}

pid_t start(const std::vector<std::string>& argv, const std::string& out_file) {
  auto args = cargv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    unblock_signals();
    int fd = open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int wait_status(pid_t pid) {
  int ws = 0;
  if (waitpid(pid, &ws, 0) != pid) return -1;
  return shell_status(ws);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l))
    if (!l.empty()) out.push_back(l);
  return out;
}

std::string temp_dir() {
  std::string t = "/tmp/agentcage-test-XXXXXX";
  if (!mkdtemp(t.data())) abort();
  return t;
}

std::string daemon_pin_dir(const std::string& dir) {
  std::string name = dir;
  // bpffs refuses names with a '.' (EPERM): keep letters, digits, '-' and '_'.
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '_';
  return "/sys/fs/bpf/agentcage-test" + name;
}

std::vector<std::string> daemon_state_args(const std::string& dir) {
  // The store's witness too: kept under the test's directory, not in /etc/agentcage.
  return {"--state-dir", dir + "/state", "--bpf-pin-dir", daemon_pin_dir(dir), "--store-witness-dir", dir + "/witness"};
}

void remove_daemon_pins(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(daemon_pin_dir(dir), ec);
}

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

bool pid_alive(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  if (!f) return false;
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto rp = s.rfind(')');
  return rp != std::string::npos && rp + 2 < s.size() && s[rp + 2] != 'Z' && s[rp + 2] != 'X';
}

std::vector<pid_t> processes_with(const std::string& token) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (read_all(e.path() / "cmdline").find(token) != std::string::npos && pid_alive(std::stoi(name)))
      out.push_back(std::stoi(name));
  }
  return out;
}

}  // namespace agentcage::testing
