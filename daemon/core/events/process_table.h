// SPDX-License-Identifier: Apache-2.0
// The user-space process table: what the kernel records carry only once (exec: argv,
// image, cwd) or not at all (the parent's exec_id), kept per live process and stamped on
// every event. Keyed by pid, identified by exec_id (boot id + start time + pid), so a
// reused pid is a new process. Processes that existed before the monitor started are
// read from /proc, at the start (seed_from_proc) and, for a parent the table has never
// seen, when its child first appears (with a proc_root). Pure without a proc_root apart
// from seed_from_proc(); not thread-safe (the reader thread owns it).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "agentcage/v1/event.pb.h"
#include "core/base/result.h"

namespace agentcage::core {

struct ProcessInfo {
  std::string exec_id;
  std::string parent_exec_id;
  uint32_t pid = 0;
  uint32_t ppid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t start_time_ns = 0;  // CLOCK_BOOTTIME ns, tick resolution when read from /proc
  std::string binary;
  std::vector<std::string> argv;
  bool argv_truncated = false;
  std::string cwd;
  std::string comm;
  std::string sandbox_id;
};

class ProcessTable {
 public:
  // proc_root (normally "/proc"): where a parent the table does not know is looked up when
  // its child first appears, e.g. the launcher that started after the table was seeded
  // and is not tracked itself (a client of agentcaged). Empty: unknown parents stay
  // unknown (pure; unit tests).
  explicit ProcessTable(std::string boot_id, std::string proc_root = {})
      : boot_id_(std::move(boot_id)), proc_root_(std::move(proc_root)) {}

  // Reads every process under proc_root (normally "/proc"). Processes that vanish while
  // being read are skipped; returns how many were added.
  Result<size_t> seed_from_proc(const std::string& proc_root = "/proc");

  // Reads one /proc/<pid> directory; error when it is gone or malformed.
  Result<ProcessInfo> read_proc_entry(const std::string& dir, uint32_t pid) const;

  void upsert(ProcessInfo p);

  // Updates the table from a decoded event (fork adds the child, exec replaces the image,
  // exit removes the process) and fills the event's process with what the table knows:
  // parent_exec_id, binary, argv, cwd, comm (fields the record already has are kept; a
  // parent_exec_id the event already names is also what the table keeps for it).
  void apply(v1::Event& ev);

  const ProcessInfo* find(uint32_t pid) const;
  size_t size() const { return by_pid_.size(); }

 private:
  ProcessInfo& entry_for(const v1::Process& p, const std::string& sandbox_id, uint64_t ktime_ns);
  void stamp(const ProcessInfo& info, v1::Process* p) const;
  std::string parent_exec_id_of(uint32_t ppid, uint32_t pid, uint64_t ktime_ns) const;
  const ProcessInfo* find_or_read(uint32_t pid, uint64_t ktime_ns);

  std::string boot_id_;
  std::string proc_root_;
  std::unordered_map<uint32_t, ProcessInfo> by_pid_;
};

}  // namespace agentcage::core
