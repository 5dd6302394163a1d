// SPDX-License-Identifier: Apache-2.0
#include "core/confine/launcher.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/base/fs.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace agentcage::core {
namespace {

// SIGWINCH too: a full-screen agent (an editor, a TUI) redraws only when it hears of a
// resize. The terminal signals its foreground process group, which the command shares
// with the launcher today; a wrapper or supervisor that signals the launcher's pid alone
// (and a command spawned out of that group) still needs it forwarded.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};

// The context of every error spawn() reports for a failed execve; exec_failure_status()
// recognises it.
constexpr std::string_view kExecContext = "execve(";

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

// Everything the child touches, built before the fork: after fork of a threaded parent
// the child may not allocate or take locks.
struct ChildPlan {
  const SpawnOptions* opts;
  const char* file;
  char* const* argv;
  char* const* envp;
  const int* keep;  // SpawnOptions::keep_fds, sorted, unique, all > 2
  size_t nkeep;
  int err_fd;
  int hold_fd;  // -1 when the child is born in its cgroup
  int life_fd;  // read end of the launcher's life pipe; -1 without a sandbox init
  // For the init to remove the sandbox cgroup when the launcher died (no one else will):
  // the cgroup directory and its parent's cgroup.procs. Null: not removed.
  const char* cgroup_dir;
  const char* parent_procs;
  bool supervised;  // life_fd is SpawnOptions::supervisor_fd (frames), not the life pipe
  const std::pair<int, int>* fd_map;
  size_t nmap;
  int* fd_tmp;  // nmap slots for apply_fd_map()
};

// SpawnOptions::fd_map, in the child: each source first moves above every number in
// play (a source may sit on another's target), then onto its target.
int apply_fd_map(const ChildPlan& p) {
  int base = 3;
  for (size_t i = 0; i < p.nmap; ++i) base = std::max({base, p.fd_map[i].first + 1, p.fd_map[i].second + 1});
  for (size_t i = 0; i < p.nmap; ++i)
    if ((p.fd_tmp[i] = ::fcntl(p.fd_map[i].first, F_DUPFD_CLOEXEC, base)) < 0) return errno;
  for (size_t i = 0; i < p.nmap; ++i)
    if (::dup2(p.fd_tmp[i], p.fd_map[i].second) < 0) return errno;  // the target is inheritable
  return 0;
}

[[noreturn]] void child_fail(int pipe_fd, int err, const char* what) {
  ChildFailure f{};
  f.err = err;
  std::strncpy(f.what, what, sizeof f.what - 1);
  (void)!::write(pipe_fd, &f, sizeof f);
  ::_exit(127);
}

// Marks descriptors lo..hi close-on-exec (child only). close_range(CLOSE_RANGE_CLOEXEC)
// (5.11+) does it in one call and, unlike closing, leaves the error pipe working until
// execve. Where it is missing (or a profile's seccomp rules refuse it): one fcntl per
// possible descriptor below the hard RLIMIT_NOFILE; if that is refused too, the command
// does not start (fail closed).
int cloexec_range(unsigned lo, unsigned hi) {
  if (lo > hi) return 0;
  if (::syscall(SYS_close_range, lo, hi, CLOSE_RANGE_CLOEXEC) == 0) return 0;
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return errno;
  // fs.nr_open's default bounds the descriptor numbers a process can hold.
  constexpr unsigned kNrOpen = 1u << 20;
  unsigned top = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > kNrOpen ? kNrOpen : static_cast<unsigned>(rl.rlim_max);
  for (unsigned fd = lo; fd <= hi && fd < top; ++fd)
    if (::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC) != 0 && errno != EBADF) return errno;
  return 0;
}

// Only 0-2 and the kept descriptors survive the exec (child only, right before execve,
// so descriptors the setup steps opened are covered too). Returns 0 or an errno.
int seal_inherited_fds(const ChildPlan& p, const char** what) {
  unsigned lo = 3;
  for (size_t i = 0; i < p.nkeep; ++i) {
    unsigned k = static_cast<unsigned>(p.keep[i]);
    *what = "close_range(CLOSE_RANGE_CLOEXEC)";
    if (int e = cloexec_range(lo, k - 1)) return e;
    // A passed descriptor may have been opened close-on-exec: passing it means keeping it.
    *what = "fcntl(F_SETFD) on a --pass-fd descriptor";
    if (::fcntl(p.keep[i], F_SETFD, 0) != 0) return errno;
    lo = k + 1;
  }
  *what = "close_range(CLOSE_RANGE_CLOEXEC)";
  return cloexec_range(lo, ~0u);
}

[[noreturn]] void child_main(const ChildPlan& p) {
  if (p.hold_fd >= 0) {
    // Fallback path: wait until the parent has moved us into the cgroup.
    char c;
    if (::read(p.hold_fd, &c, 1) != 1) child_fail(p.err_fd, EPIPE, "waiting for cgroup placement");
    ::close(p.hold_fd);
  }
  // The parent blocks the forwarded signals and ignores SIGPIPE (a dead reader must not
  // kill the supervisor); the command starts with a clean mask and default dispositions.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : kForwarded) ::signal(s, SIG_DFL);
  ::signal(SIGPIPE, SIG_DFL);
  const char* what = "child setup";
  if (p.opts->child_setup) {
    int e = p.opts->child_setup(&what);
    if (e != 0) child_fail(p.err_fd, e, what);
  }
  // The handed-over descriptors land last, once the setup no longer needs its own (the
  // Landlock ruleset, the pids cgroup, ...): a --pass-fd number may be any of them. Only the
  // error pipe lives on to the exec; it moves out of the way first.
  int err_fd = p.err_fd;
  if (p.nmap) {
    int top = 3;
    for (size_t i = 0; i < p.nmap; ++i) top = std::max(top, p.fd_map[i].second + 1);
    if (err_fd < top) {
      int moved = ::fcntl(err_fd, F_DUPFD_CLOEXEC, top);  // above every target
      if (moved < 0) child_fail(err_fd, errno, "move the error pipe above the handed-over descriptors");
      err_fd = moved;
    }
    if (int e = apply_fd_map(p)) child_fail(err_fd, e, "hand over the caller's descriptors");
  }
  if (int e = seal_inherited_fds(p, &what)) child_fail(err_fd, e, what);
  ::execve(p.file, p.argv, p.envp);
  child_fail(err_fd, errno, "execve");
}

// pid 1 of the sandbox's pid namespace (SpawnOptions::pid_namespace). Forked from a
// possibly threaded launcher (agentcaged), so it lives on system calls alone, like
// child_main. It forks the command, then only forwards signals, reaps, and ends the
// namespace: when the command exits (its status becomes the init's, so the launcher's
// wait sees the command's) and when the launcher dies. Signals reach a namespace's init
// only when it handles them; blocked and read from a signalfd, they are handled here.
[[noreturn]] void init_main(const ChildPlan& p) {
  if (p.hold_fd >= 0) {
    char c;
    if (::read(p.hold_fd, &c, 1) != 1) child_fail(p.err_fd, EPIPE, "waiting for cgroup placement");
    ::close(p.hold_fd);
  }
  // The launcher's death is seen on the life pipe (its write end closes with the
  // launcher, even one that died before we got here), not by PR_SET_PDEATHSIG: a SIGKILL
  // would end the init before it could remove the cgroup, and no other signal reaches a
  // namespace's init unless it handles it.
  // Named in ps and /proc/PID/comm (its command line stays the launcher's: it never execs).
  ::prctl(PR_SET_NAME, "agentcage-init");
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  sigset_t handled = forwarded_set();
  sigaddset(&handled, SIGCHLD);
  int sfd = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) child_fail(p.err_fd, errno, "signalfd for the sandbox init");
  // A raw clone, not fork(): glibc's fork runs atfork handlers that may take locks another
  // thread of the launcher held when it cloned us.
  long agent = ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (agent < 0) child_fail(p.err_fd, errno, "fork the command under the sandbox init");
  if (agent == 0) {
    ChildPlan cp = p;
    cp.hold_fd = -1;
    child_main(cp);  // reports its own failures on the error pipe; exits 127 then
  }
  // Only the life pipe and the signalfd stay: the error pipe must close here so the
  // launcher sees the command's exec, and nothing the launcher held is the init's business.
  const int keep_lo = p.life_fd < sfd ? p.life_fd : sfd, keep_hi = p.life_fd < sfd ? sfd : p.life_fd;
  ::syscall(SYS_close_range, 3u, static_cast<unsigned>(keep_lo - 1), 0u);
  ::syscall(SYS_close_range, static_cast<unsigned>(keep_lo + 1), static_cast<unsigned>(keep_hi - 1), 0u);
  ::syscall(SYS_close_range, static_cast<unsigned>(keep_hi + 1), ~0u, 0u);
  ::close(p.err_fd);  // in case close_range is unavailable
  int status = 128 + SIGKILL;
  bool orphaned = false;
  for (;;) {
    struct pollfd f[2] = {{sfd, POLLIN, 0}, {p.life_fd, POLLIN, 0}};
    if (::poll(f, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (f[1].revents) {
      // The supervisor's frames, or its end: the launcher (client) is gone, and nothing
      // of the sandbox runs unsupervised. (The life pipe carries no data: any event is EOF.)
      SupervisorFrame fr;
      ssize_t n = p.supervised ? ::recv(p.life_fd, &fr, sizeof fr, MSG_DONTWAIT) : 0;
      if (n == static_cast<ssize_t>(sizeof fr) && fr.type == kFrameSignal) {
        for (int s : kForwarded)
          if (s == fr.value) ::kill(static_cast<pid_t>(agent), s);
      } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        orphaned = true;
        break;
      }
    }
    if (!(f[0].revents & POLLIN)) continue;
    struct signalfd_siginfo si;
    while (::read(sfd, &si, sizeof si) == sizeof si)
      if (si.ssi_signo != SIGCHLD) ::kill(static_cast<pid_t>(agent), static_cast<int>(si.ssi_signo));
    int ws = 0;
    pid_t w;
    bool done = false;
    while ((w = ::waitpid(-1, &ws, WNOHANG)) > 0)
      if (w == agent) {
        status = exit_status_from_wait(ws);
        done = true;
      }
    if (done) break;
  }
  if (p.supervised && !orphaned) {
    SupervisorFrame fr{kFrameExit, status};
    (void)!::send(p.life_fd, &fr, sizeof fr, MSG_NOSIGNAL);
  }
  // What the command left behind ends with it, as the cgroup kill would end it. (Only as
  // a namespace's init: kill(-1) from anywhere else reaches far more.)
  if (::getpid() == 1) ::kill(-1, SIGKILL);
  if (orphaned && !p.supervised && p.cgroup_dir && p.parent_procs) {
    // The launcher would have destroyed the cgroup: with every process of the namespace
    // reaped, the init leaves it for the parent and removes it.
    for (;;)
      if (::waitpid(-1, nullptr, 0) < 0 && errno != EINTR) break;
    int fd = ::open(p.parent_procs, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)!::write(fd, "0", 1);
      ::close(fd);
    }
    ::rmdir(p.cgroup_dir);
  }
  ::_exit(status);
}

// The descriptors to keep, sorted and unique, or the error naming a bad one.
Result<std::vector<int>> kept_fds(const std::vector<int>& in) {
  std::vector<int> keep(in);
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  for (int fd : keep) {
    if (fd <= 2) return error("spawn: cannot keep descriptor " + std::to_string(fd) + ": 0-2 are always inherited");
    if (::fcntl(fd, F_GETFD) < 0) return sys_error("spawn: descriptor " + std::to_string(fd) + " to pass");
  }
  return keep;
}

// The error pipe closes on a successful exec (O_CLOEXEC, and the parent's write end is
// closed); a record on it means the child failed before, and then it is reaped here.
Status await_exec(int err_r, pid_t pid, const std::string& cmd) {
  ChildFailure f{};
  ssize_t n;
  do n = ::read(err_r, &f, sizeof f);
  while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof f)) return {};
  ::waitpid(pid, nullptr, 0);
  std::string what(f.what, strnlen(f.what, sizeof f.what));
  if (what != "execve") return sys_error(what, f.err);
  std::string hint = f.err == ENOENT ? "command not found: check the name and PATH"
                     : f.err == EACCES ? "the file exists but cannot be executed (no execute permission, a "
                                         "directory, a noexec mount, or the profile does not allow it)"
                                       : "";
  return sys_error(std::string(kExecContext) + cmd + ")", f.err, hint);
}

}  // namespace

void block_forwarded_signals() {
  sigset_t set = forwarded_set();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

std::optional<int> exec_failure_status(const Error& e) {
  if (!e.context.starts_with(kExecContext)) return std::nullopt;
  return e.code == ENOENT ? 127 : 126;
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
  std::vector<char*> envp;
  if (opts.env) {
    for (const auto& e : *opts.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  char* const* env = opts.env ? envp.data() : environ;
  // execvp's PATH search may allocate; after fork in a threaded parent only the exec
  // itself is safe, so the search happens here, in the PATH the command will have.
  const std::string file = opts.env ? find_in_path(opts.argv[0], path_in_env(*opts.env)) : find_in_path(opts.argv[0]);
  // A bare name found nowhere on PATH is not looked for in the current directory (execve
  // would take it as a relative path): like a shell, the command does not exist.
  if (file.empty())
    return sys_error(std::string(kExecContext) + opts.argv[0] + ")", ENOENT, "command not found: check the name and PATH");
  auto keep = kept_fds(opts.keep_fds);
  if (!keep) return std::unexpected(keep.error());

  int errp[2];
  if (::pipe2(errp, O_CLOEXEC) != 0) return sys_error("pipe2");
  UniqueFd err_r(errp[0]), err_w(errp[1]);

  if (opts.supervisor_fd >= 0 && !opts.pid_namespace) return error("spawn: a supervisor channel needs the pid namespace");
  // --pass-fd targets of an fd_map are the command's numbers, not this process's.
  for (const auto& [from, to] : opts.fd_map) {
    if (::fcntl(from, F_GETFD) < 0) return sys_error("spawn: descriptor " + std::to_string(from) + " to hand over");
    if (to > 2) keep->push_back(to);
  }
  std::sort(keep->begin(), keep->end());
  keep->erase(std::unique(keep->begin(), keep->end()), keep->end());
  std::vector<int> fd_tmp(opts.fd_map.size());
  UniqueFd life_r, life_w;
  if (opts.pid_namespace && opts.supervisor_fd < 0) {
    int lp[2];
    if (::pipe2(lp, O_CLOEXEC) != 0) return sys_error("pipe2");
    life_r.reset(lp[0]);
    life_w.reset(lp[1]);
  }
  std::string parent_procs;
  if (!opts.cgroup_path.empty()) parent_procs = std::filesystem::path(opts.cgroup_path).parent_path().string() + "/cgroup.procs";
  auto plan = [&](int hold_fd) {
    return ChildPlan{&opts,
                     file.c_str(),
                     argv.data(),
                     env,
                     keep->data(),
                     keep->size(),
                     err_w.get(),
                     hold_fd,
                     !opts.pid_namespace ? -1 : opts.supervisor_fd >= 0 ? opts.supervisor_fd : life_r.get(),
                     opts.cgroup_path.empty() ? nullptr : opts.cgroup_path.c_str(),
                     parent_procs.empty() ? nullptr : parent_procs.c_str(),
                     opts.supervisor_fd >= 0,
                     opts.fd_map.data(),
                     opts.fd_map.size(),
                     fd_tmp.data()};
  };
  auto start = [&](const ChildPlan& p) {
    if (opts.pid_namespace) {
      if (life_w) ::close(life_w.get());  // the launcher's end only: its closing is the launcher's death
      init_main(p);
    }
    child_main(p);
  };

  Child child;
  int pidfd = -1;
  struct clone_args args{};
  args.flags = CLONE_PIDFD | (opts.cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0) | (opts.pid_namespace ? CLONE_NEWPID : 0);
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = opts.cgroup_fd >= 0 ? static_cast<uint64_t>(opts.cgroup_fd) : 0;
  long r = -1;
  errno = ENOSYS;
  if (!opts.place) {
    r = ::syscall(SYS_clone3, &args, sizeof args);
    if (r == 0) start(plan(-1));
  }

  if (r < 0) {
    // No clone3 / CLONE_INTO_CGROUP (pre-5.7 kernels, some seccomp'd containers), or a
    // daemon places the child: fork and hold the child on a pipe until it is placed.
    if (errno != ENOSYS && errno != EINVAL && errno != E2BIG) return sys_error("clone3(CLONE_INTO_CGROUP)");
    int holdp[2];
    if (::pipe2(holdp, O_CLOEXEC) != 0) return sys_error("pipe2");
    UniqueFd hold_r(holdp[0]), hold_w(holdp[1]);
    // clone(CLONE_NEWPID) with no stack is a fork into a new pid namespace.
    pid_t pid = opts.pid_namespace
                    ? static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD | CLONE_NEWPID, nullptr, nullptr, nullptr, nullptr))
                    : ::fork();
    if (pid < 0) return sys_error(opts.pid_namespace ? "clone(CLONE_NEWPID)" : "fork");
    if (pid == 0) start(plan(hold_r.get()));
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

  err_w.reset();
  life_r.reset();
  child.life = std::move(life_w);
  if (auto st = await_exec(err_r.get(), child.pid, opts.argv[0]); !st) return std::unexpected(st.error());
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
