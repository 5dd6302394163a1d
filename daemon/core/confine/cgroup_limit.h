// SPDX-License-Identifier: Apache-2.0
// Per-sandbox resource limits through a cgroup controller (pids, memory, cpu): v2 where the
// controller is enabled for the sandbox cgroup, else a v1 hierarchy of that controller
// (hybrid hosts like Debian's default mount pids, memory and cpu as v1 only).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/base/result.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {

enum class LimitMechanism { none, cgroup_v2, cgroup_v1 };

// Pure: which mechanism to use given whether the v2 sandbox cgroup has the controller's
// file and the v1 controller's mount point ("" when none). Unit-tested.
LimitMechanism choose_limit_mechanism(bool v2_has_file, std::string_view v1_mount);

// One value to write, in each hierarchy's spelling. Written in order: a v1 memory+swap
// limit may not be set below the memory limit, so memory goes first.
struct CgroupSetting {
  std::string v2_file, v2_value;  // "memory.max", "1073741824"; empty file: nothing for v2
  std::string v1_file, v1_value;  // "memory.limit_in_bytes"; empty file: nothing for v1
  // false: skipped when the file does not exist (memory.swap.max without swap accounting).
  bool required = true;
};

// What a limit is: the controller and its settings. The first required setting's file tells
// whether the v2 cgroup has the controller. Pure constructors, unit-tested.
struct LimitSpec {
  std::string controller;        // "pids", "memory", "cpu" (also the v1 mount's option)
  std::string field;             // the profile field, for errors: "process.max_pids"
  std::vector<CgroupSetting> settings;
};
LimitSpec pids_limit_spec(uint32_t max);
// The limit covers swap too: a sandbox that may swap past memory.max is not bounded.
LimitSpec memory_limit_spec(uint64_t bytes);
// weight 1-10000 (v2 cpu.weight; v1 cpu.shares = weight * 1024 / 100, the two defaults).
LimitSpec cpu_weight_spec(uint32_t weight);

// A limit in place. For v1 it owns <controller mount>/agentcage/<id>, which the child joins
// by writing "0" to the cgroup.procs fd opened here; the destructor removes the directory
// once the sandbox's processes are gone (the v2 cgroup kill does the killing).
class CgroupLimit {
 public:
  CgroupLimit() = default;
  CgroupLimit(CgroupLimit&& o) noexcept
      : spec_(std::move(o.spec_)), mech_(o.mech_), v1_dir_(std::exchange(o.v1_dir_, {})),
        procs_fd_(std::move(o.procs_fd_)) {}
  CgroupLimit& operator=(CgroupLimit&&) = delete;
  ~CgroupLimit();

  // `cgroup2_path` is the sandbox's v2 cgroup. `mountinfo` is this process's.
  static Result<CgroupLimit> create(LimitSpec spec, const std::string& cgroup2_path, const std::string& sandbox_id,
                                    std::string_view mountinfo);

  // Which hierarchy create() would use, without creating anything.
  static LimitMechanism probe(const LimitSpec& spec, const std::string& cgroup2_path, std::string_view mountinfo);

  LimitMechanism mechanism() const { return mech_; }
  // "cgroup v2 memory.max", "cgroup v1 pids.max": what enforces it, for provenance and
  // violations.
  std::string describe() const;
  const std::string& v1_path() const { return v1_dir_; }
  // Child side: join the v1 cgroup (no-op for v2: clone3 placed us already). 0 or errno.
  int join() const;

 private:
  LimitSpec spec_;
  LimitMechanism mech_ = LimitMechanism::none;
  std::string v1_dir_;
  UniqueFd procs_fd_;
};

// Which hierarchy holds `spec`'s limit for a sandbox prepared earlier (by an agentcaged
// before a restart): describe()'s text, or "" when neither the v2 cgroup's file nor the v1
// directory is there.
std::string existing_limit(const LimitSpec& spec, const std::string& cgroup2_path, const std::string& sandbox_id,
                           std::string_view mountinfo);

// The v1 directories agentcage creates for sandbox `id` under each controller's mount:
// removed by whoever closes a sandbox it did not prepare (agentcaged after a restart).
void remove_v1_limit_dirs(const std::string& sandbox_id, std::string_view mountinfo);

}  // namespace agentcage::core
