// SPDX-License-Identifier: Apache-2.0
// cgroup v2 sandboxes: discovery of the cgroup2 mount, creation, kill and removal.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/fs.h"
#include "core/base/mountinfo.h"
#include "core/base/result.h"
#include "core/base/unique_fd.h"

namespace agentcage::core {

// SIGKILL everything inside the cgroup at `path` (cgroup.kill, or per-pid kill where the
// kernel lacks it).
Status kill_cgroup(const std::string& path);

// A cgroup v2 directory this process created and owns. Destroying it kills every process
// left inside and removes the directory, so nothing started in it outlives it.
class Cgroup {
 public:
  // mkdir `path` (parents created as needed) and open it.
  static Result<Cgroup> create(const std::string& path);
  // Takes ownership of an existing cgroup (one a previous agentcaged created), checking
  // it is still the one with `expected_id`: a directory recreated under the same name is
  // another cgroup.
  static Result<Cgroup> adopt(const std::string& path, uint64_t expected_id);

  Cgroup(Cgroup&&) noexcept = default;
  Cgroup& operator=(Cgroup&&) noexcept = default;
  ~Cgroup();

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  // The kernel's cgroup id (what bpf_get_current_cgroup_id() returns for tasks inside).
  uint64_t id() const { return id_; }

  // SIGKILL everything inside (cgroup.kill, or per-pid kill where the kernel lacks it).
  Status kill_all();
  // True once no process is left inside (cgroup.events "populated 0").
  Result<bool> empty() const;
  // kill_all, wait up to `timeout` for the cgroup to empty, rmdir. Idempotent.
  Status destroy(std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  Cgroup(std::string path, UniqueFd fd, uint64_t id) : path_(std::move(path)), fd_(std::move(fd)), id_(id) {}
  std::string path_;
  UniqueFd fd_;
  uint64_t id_ = 0;
};

}  // namespace agentcage::core
