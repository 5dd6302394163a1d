// SPDX-License-Identifier: Apache-2.0
// Starts a command inside a sandbox cgroup and supervises it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/base/result.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  int cgroup_fd = -1;             // cgroup v2 directory the child is born into
  std::string cgroup_path;        // same cgroup, for the cgroup.procs fallback
  // Runs in the child after placement, right before execve. It runs after fork of a
  // possibly multi-threaded parent: it must only make system calls on data prepared
  // beforehand (no allocation, no locks). Returns 0 or an errno, and fills `what`
  // (a static string) to say which step failed.
  std::function<int(const char** what)> child_setup;
  // Instead of a cgroup fd: the child is held on a pipe while this moves it (used when a
  // daemon does the placement for an unprivileged launcher). Called in the parent.
  std::function<Status(pid_t)> place;
  // Descriptors above 2 the command inherits (`run --pass-fd`). Every other descriptor of
  // the launcher is closed at exec, whether or not it was opened close-on-exec: a secret
  // file, a socket or a pipe the caller left open must not reach the agent by accident.
  std::vector<int> keep_fds;
  // The command's whole environment, "NAME=value" (e.g. SandboxPolicy::env.env); argv[0]
  // is looked up in its PATH. Unset: the launcher's own environ (a run without a profile).
  std::optional<std::vector<std::string>> env;
  // Start the command in a new pid namespace under a small agentcage init (pid 1 there):
  // it forwards the launcher's signals to the command, reaps orphans, exits with the
  // command's status, and takes every process of the namespace with it when the command
  // ends or the launcher dies (SIGKILL of the launcher included). Needs CAP_SYS_ADMIN.
  bool pid_namespace = false;
  // With pid_namespace: a SOCK_SEQPACKET socket to the process that supervises the run
  // (agentcaged hands the client's launch connection here). The init reads SIGNAL frames
  // from it and forwards them, sends the EXIT frame when the command ends, and ends the
  // namespace when it closes (the client died). Replaces the life pipe; -1: none.
  int supervisor_fd = -1;
  // Descriptors of this process that the command gets under other numbers ({from, to}):
  // a daemon hands on the client's stdio (to 0-2) and its --pass-fd descriptors.
  std::vector<std::pair<int, int>> fd_map;
};

// One frame per packet on SpawnOptions::supervisor_fd (and on the launch connection).
struct SupervisorFrame {
  int32_t type = 0;
  int32_t value = 0;
};
enum : int32_t {
  kFrameSignal = 1,   // supervisor -> init: forward signal `value` to the command
  kFrameExit = 2,     // init -> supervisor: the command ended with shell-style status `value`
  kFrameStarted = 3,  // agentcaged -> client: the command runs (value: the init's pid)
  kFrameError = 4,    // agentcaged -> client: the launch failed; value: exit status, text follows
};

// A started child. The pidfd makes waiting and signalling race-free against pid reuse.
// With SpawnOptions::pid_namespace, pid/pidfd are the init's (signals sent to it reach
// the command; its exit status is the command's) and `life` is the launcher's end of the
// pipe whose closing makes the init kill the namespace: dropping the Child ends the sandbox.
struct Child {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd life;
};

// clone3(CLONE_INTO_CGROUP | CLONE_PIDFD) so the child never runs outside its cgroup;
// where clone3 or CLONE_INTO_CGROUP is missing, the child blocks on a pipe until the
// parent has written it into cgroup.procs. A failure in the child before exec (setup
// step, or execve itself) is reported back here as an error, not as an exit status.
Result<Child> spawn(const SpawnOptions& opts);

// The shell's status for a spawn() that failed at execve: 127 when the command does not
// exist, 126 when it exists but cannot be executed. nullopt for any other failure (a
// confinement step, placement), which is agentcage's own error, not the command's.
std::optional<int> exec_failure_status(const Error& e);

// Waits for the child while forwarding SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH to it.
// Returns the shell-style exit status: the exit code, or 128+N when killed by signal N.
// Call block_forwarded_signals() before spawn() (and before starting threads) so no
// signal is lost or handled by another thread in between.
Result<int> wait_forwarding_signals(Child& child);
void block_forwarded_signals();

// Shell-style status from a wait status: code, or 128+signal.
int exit_status_from_wait(int wstatus);

}  // namespace agentcage::core
