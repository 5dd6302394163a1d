// SPDX-License-Identifier: Apache-2.0
#include "core/confine/launcher.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "core/base/fs.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace agentcage::core {
namespace {

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

sigset_t forwarded_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kForwarded) sigaddset(&set, s);
  return set;
}

// What the child writes to the error pipe when it fails before exec.
struct ChildFailure {
  int err;
  char what[120];
};

[[noreturn]] void child_fail(int pipe_fd, int err, const char* what) {
  ChildFailure f{};
  f.err = err;
  std::strncpy(f.what, what, sizeof f.what - 1);
  (void)!::write(pipe_fd, &f, sizeof f);
  ::_exit(127);
}

// Runs in the child. Only async-signal-safe calls on prepared data.
// execvp's PATH search may allocate; after fork in a threaded parent only the exec
// itself is safe, so the search happens here, before the fork.
std::string resolve_command(const std::string& cmd) {
  std::string found = find_in_path(cmd);
  return found.empty() ? cmd : found;  // execve reports ENOENT with the name the user gave
}

[[noreturn]] void child_main(const SpawnOptions& opts, const char* file, char* const* argv, int err_fd, int hold_fd) {
  if (hold_fd >= 0) {
    // Fallback path: wait until the parent has moved us into the cgroup.
    char c;
    if (::read(hold_fd, &c, 1) != 1) child_fail(err_fd, EPIPE, "waiting for cgroup placement");
    ::close(hold_fd);
  }
  // The parent blocks the forwarded signals; the command starts with a clean mask.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : kForwarded) ::signal(s, SIG_DFL);
  if (opts.child_setup) {
    const char* what = "child setup";
    int e = opts.child_setup(&what);
    if (e != 0) child_fail(err_fd, e, what);
  }
  ::execve(file, argv, environ);
  child_fail(err_fd, errno, "execve");
}

}  // namespace

void block_forwarded_signals() {
  sigset_t set = forwarded_set();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int exit_status_from_wait(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return 255;
}

Result<Child> spawn(const SpawnOptions& opts) {
  if (opts.argv.empty()) return error("spawn: empty command");
  // Everything the child touches is built before the fork.
  std::vector<char*> argv;
  for (const auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string file = resolve_command(opts.argv[0]);

  int errp[2];
  if (::pipe2(errp, O_CLOEXEC) != 0) return sys_error("pipe2");
  UniqueFd err_r(errp[0]), err_w(errp[1]);

  Child child;
  int pidfd = -1;
  struct clone_args args{};
  args.flags = CLONE_PIDFD | (opts.cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = opts.cgroup_fd >= 0 ? static_cast<uint64_t>(opts.cgroup_fd) : 0;
  long r = -1;
  errno = ENOSYS;
  if (!opts.place) {
    r = ::syscall(SYS_clone3, &args, sizeof args);
    if (r == 0) child_main(opts, file.c_str(), argv.data(), err_w.get(), -1);
  }

  if (r < 0) {
    // No clone3 / CLONE_INTO_CGROUP (pre-5.7 kernels, some seccomp'd containers), or a
    // daemon places the child: fork and hold the child on a pipe until it is placed.
    if (errno != ENOSYS && errno != EINVAL && errno != E2BIG) return sys_error("clone3(CLONE_INTO_CGROUP)");
    int holdp[2];
    if (::pipe2(holdp, O_CLOEXEC) != 0) return sys_error("pipe2");
    UniqueFd hold_r(holdp[0]), hold_w(holdp[1]);
    pid_t pid = ::fork();
    if (pid < 0) return sys_error("fork");
    if (pid == 0) child_main(opts, file.c_str(), argv.data(), err_w.get(), hold_r.get());
    child.pid = pid;
    child.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!child.pidfd) {
      int e = errno;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return sys_error("pidfd_open", e, "agentcage needs Linux 5.3+ (pidfd)");
    }
    if (opts.place) {
      if (auto st = opts.place(pid); !st) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return std::unexpected(st.error());
      }
    } else if (opts.cgroup_fd >= 0) {
      std::string procs = opts.cgroup_path + "/cgroup.procs";
      std::string p = std::to_string(pid);
      int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      bool ok = fd >= 0 && ::write(fd, p.data(), p.size()) == static_cast<ssize_t>(p.size());
      int e = errno;
      if (fd >= 0) ::close(fd);
      if (!ok) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return sys_error("write(" + procs + ")", e);
      }
    }
    (void)!::write(hold_w.get(), "g", 1);
  } else {
    child.pid = static_cast<pid_t>(r);
    child.pidfd.reset(pidfd);
  }

  // The error pipe closes on successful exec (O_CLOEXEC); data means the child failed.
  err_w.reset();
  ChildFailure f{};
  ssize_t n;
  do n = ::read(err_r.get(), &f, sizeof f);
  while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof f)) {
    ::waitpid(child.pid, nullptr, 0);
    std::string what(f.what, strnlen(f.what, sizeof f.what));
    std::string hint;
    if (what == "execve" && f.err == ENOENT) hint = "command not found: check the name and PATH";
    return sys_error(what == "execve" ? "execve(" + opts.argv[0] + ")" : what, f.err, hint);
  }
  return child;
}

Result<int> wait_forwarding_signals(Child& child) {
  sigset_t set = forwarded_set();
  UniqueFd sfd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd) return sys_error("signalfd");
  for (;;) {
    struct pollfd fds[2] = {{child.pidfd.get(), POLLIN, 0}, {sfd.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("poll");
    }
    if (fds[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (::read(sfd.get(), &si, sizeof si) == sizeof si) {
        ::syscall(SYS_pidfd_send_signal, child.pidfd.get(), static_cast<int>(si.ssi_signo), nullptr, 0);
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      int wstatus = 0;
      pid_t w = ::waitpid(child.pid, &wstatus, WNOHANG);
      if (w == child.pid) return exit_status_from_wait(wstatus);
      if (w < 0) return sys_error("waitpid(" + std::to_string(child.pid) + ")");
    }
  }
}

}  // namespace agentcage::core
