// SPDX-License-Identifier: Apache-2.0
// Process-count limit for a sandbox: the cgroup pids controller, v2 where it is enabled
// for the sandbox cgroup, else a v1 pids hierarchy (hybrid hosts like Debian's default).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "core/base/result.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {

enum class PidsMechanism { none, cgroup_v2, cgroup_v1 };
const char* pids_mechanism_name(PidsMechanism m);

// Pure: which mechanism to use given whether the v2 sandbox cgroup has pids.max and the
// v1 pids mount point ("" when none). Unit-tested.
PidsMechanism choose_pids_mechanism(bool v2_has_pids_max, std::string_view v1_mount);

// A limit in place. For v1 it owns <pids mount>/agentcage/<id>, which the child joins by
// writing "0" to the cgroup.procs fd opened here; the destructor removes the directory
// once the sandbox's processes are gone (the v2 cgroup kill does the killing).
class PidsLimit {
 public:
  PidsLimit() = default;
  PidsLimit(PidsLimit&& o) noexcept
      : mech_(o.mech_), v1_dir_(std::exchange(o.v1_dir_, {})), procs_fd_(std::move(o.procs_fd_)) {}
  PidsLimit& operator=(PidsLimit&&) = delete;
  ~PidsLimit();

  // `max` > 0. `cgroup2_path` is the sandbox's v2 cgroup. `mountinfo` is this process's.
  static Result<PidsLimit> create(uint32_t max, const std::string& cgroup2_path, const std::string& sandbox_id,
                                  std::string_view mountinfo);

  PidsMechanism mechanism() const { return mech_; }
  const std::string& v1_path() const { return v1_dir_; }
  // Child side: join the v1 cgroup (no-op for v2: clone3 placed us already). 0 or errno.
  int join() const;

 private:
  PidsMechanism mech_ = PidsMechanism::none;
  std::string v1_dir_;
  UniqueFd procs_fd_;
};

}  // namespace agentcage::core
