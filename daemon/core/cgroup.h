// SPDX-License-Identifier: Apache-2.0
// cgroup v2 sandboxes: discovery of the cgroup2 mount, creation, kill and removal.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"
#include "core/unique_fd.h"

namespace agentcage::core {

// Mount point of the cgroup2 hierarchy in a /proc/<pid>/mountinfo text. Pure: unit-tested.
// Here (hybrid cgroups) it is /sys/fs/cgroup/unified, on unified-only hosts /sys/fs/cgroup.
Result<std::string> find_cgroup2_mount(std::string_view mountinfo);

// Mount point of a cgroup v1 hierarchy carrying `controller` (e.g. "pids"), or an error.
Result<std::string> find_cgroup1_mount(std::string_view mountinfo, std::string_view controller);

// find_cgroup2_mount() over this process's /proc/self/mountinfo.
Result<std::string> cgroup2_mount();

// A cgroup v2 directory this process created and owns. Destroying it kills every process
// left inside and removes the directory, so nothing started in it outlives it.
class Cgroup {
 public:
  // mkdir `path` (parents created as needed) and open it.
  static Result<Cgroup> create(const std::string& path);

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

// The cgroup v2 id of a directory (via name_to_handle_at, as the kernel reports it to BPF).
Result<uint64_t> cgroup_id_of(const std::string& path);

// Read a whole (small, procfs/cgroupfs) file.
Result<std::string> read_file(const std::string& path);
Status write_file(const std::string& path, std::string_view data);

}  // namespace agentcage::core
