// SPDX-License-Identifier: Apache-2.0
// A sandbox's process tree, rebuilt from its stored exec/fork/exit events (pure: no I/O).
//
// A node is a process, identified by exec_id (boot id + pid + start time: stable across
// execve, new across pid reuse). Its image is the last successful exec's; a forked child
// that never exec'd shows its parent's image under its own pid. Parent links come, in
// order of trust, from the fork event that created the process (fork.child_exec_id), the
// event's own parent_exec_id, and finally its ppid resolved to the process that had that
// pid at that point in the event order. The daemon's fork events carry only the parent's
// pid (the kernel record describes the child), hence the pid -> exec_id bookkeeping.
//
// Events must be fed in store (seq) order. Processes whose parent is unknown (the
// sandbox's first process, whose fork happened before placement; events lost to
// retention) are roots. Depth is capped: protobuf parsers refuse messages nested deeper
// than 100, and an agent must not be able to make its own tree unreadable by forking a
// long chain, so nodes below kMaxTreeDepth are re-attached as roots (their
// process.parent_exec_id still names the real parent).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "agentcage/v1/control.pb.h"

namespace agentcage::core {

inline constexpr size_t kMaxTreeDepth = 48;

class ProcessTreeBuilder {
 public:
  // Applies one event; kinds other than exec/fork/exit only make their process known.
  void add(const v1::Event& ev);
  // The forest: roots and children in order of first appearance (start order).
  v1::ProcessTreeResponse build() const;
  size_t processes() const { return nodes_.size(); }

 private:
  struct Node {
    v1::Process process;
    std::string parent;      // exec_id; empty: unknown
    bool exited = false;
    int32_t exit_status = 0; // shell style: code, or 128 + signal
    uint64_t exit_time_ns = 0;
    size_t order = 0;        // first appearance
  };
  Node& node(const std::string& exec_id, const v1::Process& p);
  std::string resolve_pid(uint32_t pid) const;

  std::unordered_map<std::string, Node> nodes_;
  std::unordered_map<uint32_t, std::string> live_by_pid_;  // pid -> exec_id, as of the last event
};

// Convenience for tests and small inputs.
v1::ProcessTreeResponse build_process_tree(const std::vector<v1::Event>& events);

}  // namespace agentcage::core
