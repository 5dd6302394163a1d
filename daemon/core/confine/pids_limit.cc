// SPDX-License-Identifier: Apache-2.0
#include "core/confine/pids_limit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "core/confine/cgroup.h"

namespace agentcage::core {

const char* pids_mechanism_name(PidsMechanism m) {
  switch (m) {
    case PidsMechanism::cgroup_v2: return "cgroup v2 pids.max";
    case PidsMechanism::cgroup_v1: return "cgroup v1 pids.max";
    case PidsMechanism::none: break;
  }
  return "none";
}

PidsMechanism choose_pids_mechanism(bool v2_has_pids_max, std::string_view v1_mount) {
  if (v2_has_pids_max) return PidsMechanism::cgroup_v2;
  if (!v1_mount.empty()) return PidsMechanism::cgroup_v1;
  return PidsMechanism::none;
}

Result<PidsLimit> PidsLimit::create(uint32_t max, const std::string& cgroup2_path, const std::string& sandbox_id,
                                    std::string_view mountinfo) {
  PidsLimit l;
  std::string v2max = cgroup2_path + "/pids.max";
  bool v2 = !cgroup2_path.empty() && ::access(v2max.c_str(), W_OK) == 0;
  auto v1 = find_cgroup1_mount(mountinfo, "pids");
  l.mech_ = choose_pids_mechanism(v2, v1 ? std::string_view(*v1) : std::string_view{});
  std::string value = std::to_string(max);
  switch (l.mech_) {
    case PidsMechanism::cgroup_v2:
      if (auto st = write_file(v2max, value); !st) return std::unexpected(st.error());
      return l;
    case PidsMechanism::cgroup_v1: {
      std::string parent = *v1 + "/agentcage";
      if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir(" + parent + ")");
      l.v1_dir_ = parent + "/" + sandbox_id;
      if (::mkdir(l.v1_dir_.c_str(), 0755) != 0) {
        auto e = sys_error("mkdir(" + l.v1_dir_ + ")");
        l.v1_dir_.clear();
        return e;
      }
      if (auto st = write_file(l.v1_dir_ + "/pids.max", value); !st) return std::unexpected(st.error());
      std::string procs = l.v1_dir_ + "/cgroup.procs";
      l.procs_fd_.reset(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
      if (!l.procs_fd_) return sys_error("open(" + procs + ")");
      return l;
    }
    case PidsMechanism::none:
      break;
  }
  return error("process.max_pids: no pids controller (cgroup v2 pids not enabled for the sandbox cgroup, no cgroup v1 pids hierarchy)",
               "enable it: echo +pids > <cgroup2 mount>/cgroup.subtree_control (and in each ancestor), "
               "or mount a v1 pids hierarchy; or drop max_pids / use mode: audit");
}

int PidsLimit::join() const {
  if (mech_ != PidsMechanism::cgroup_v1) return 0;
  // "0" means the writing task (cgroup v1 and v2 both accept it): no formatting needed.
  if (::write(procs_fd_.get(), "0", 1) != 1) return errno;
  return 0;
}

PidsLimit::~PidsLimit() {
  if (v1_dir_.empty()) return;
  procs_fd_.reset();
  // The v2 cgroup kill took the processes; exiting tasks leave the v1 cgroup shortly after.
  for (int i = 0; i < 2000; ++i) {
    if (::rmdir(v1_dir_.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  spdlog::warn("rmdir({}): {}", v1_dir_, strerror(errno));
}

}  // namespace agentcage::core
