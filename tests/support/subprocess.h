// SPDX-License-Identifier: Apache-2.0
// Test support: run a real process, capture its output and status; parse JSON lines.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace agentcage::testing {

struct ProcResult {
  int status = -1;       // shell-style: code, or 128+signal; -1 if it could not start
  std::string out;       // stdout
  std::string err;       // stderr
};

// Runs argv to completion (killed after `timeout`), capturing stdout and stderr.
ProcResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60));

// Starts argv in the background with stdout/stderr to files; returns its pid.
pid_t start(const std::vector<std::string>& argv, const std::string& out_file);
// Waits for a pid started with start(); shell-style status.
int wait_status(pid_t pid);

std::vector<std::string> lines(const std::string& text);
std::string temp_dir();  // a fresh directory under /tmp, removed by the OS eventually
bool pid_alive(pid_t pid);  // exists and is not a zombie
// The live processes whose command line contains `token` (a sandbox's pid namespace
// changes pids, not command lines).
std::vector<pid_t> processes_with(const std::string& token);
std::string read_all(const std::string& path);  // a whole file; empty if unreadable
// Polls pred every 20 ms until it holds or `timeout` passes; its last answer.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// agentcaged flags giving a test daemon its own state directory (under `dir`) and BPF pin
// directory, so the daemons of different tests, or two in one test, never share them (a
// daemon locks both). remove_daemon_pins() removes what a SIGKILLed daemon leaves pinned:
// its programs would stay attached to the cgroup root otherwise.
std::vector<std::string> daemon_state_args(const std::string& dir);
std::string daemon_pin_dir(const std::string& dir);
void remove_daemon_pins(const std::string& dir);

}  // namespace agentcage::testing
