// SPDX-License-Identifier: Apache-2.0
// Test support: a real agentcaged on a socket of its own, and real unprivileged callers.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace agentcage::testing {

// agentcaged started on `dir`/agentcage.sock with its store in `dir`; the binaries on the
// way to it are made traversable so user nobody can run agentcage against it.
class DaemonProcess {
 public:
  DaemonProcess() = default;
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;
  ~DaemonProcess();  // stops it (SIGTERM) if still running

  // Starts it in a fresh directory (`extra`: more agentcaged options) and waits (up to
  // 5 s) for its socket. Empty on success, else what went wrong with the daemon's log.
  std::string start(const std::vector<std::string>& extra = {});
  // SIGTERM and wait: its shell-style exit status (0 for a clean shutdown).
  int stop();

  const std::string& dir() const { return dir_; }
  const std::string& socket() const { return sock_; }
  pid_t pid() const { return pid_; }
  std::string log() const;

 private:
  std::string dir_, sock_;
  pid_t pid_ = -1;
};

// argv run as user nobody, exec'd directly (setpriv, no su or shell in between): the pid
// that starts is the command's own, so a signal sent to it reaches the command.
std::vector<std::string> as_nobody(const std::vector<std::string>& argv);

// Makes every directory on the way to `path` world-traversable (for user nobody).
void make_reachable(const std::string& path);

}  // namespace agentcage::testing
