// SPDX-License-Identifier: Apache-2.0
#include "core/confine/cgroup_limit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "core/confine/cgroup.h"

namespace agentcage::core {

LimitMechanism choose_limit_mechanism(bool v2_has_file, std::string_view v1_mount) {
  if (v2_has_file) return LimitMechanism::cgroup_v2;
  if (!v1_mount.empty()) return LimitMechanism::cgroup_v1;
  return LimitMechanism::none;
}

LimitSpec pids_limit_spec(uint32_t max) {
  std::string v = std::to_string(max);
  return {"pids", "process.max_pids", {{"pids.max", v, "pids.max", v}}};
}

LimitSpec memory_limit_spec(uint64_t bytes) {
  std::string v = std::to_string(bytes);
  // v2 counts swap apart (memory.swap.max 0: none); v1's memsw limit is memory plus swap,
  // so setting it equal to the memory limit leaves no swap. Both exist only with swap
  // accounting, which a host without swap may lack: then there is no swap to bound.
  return {"memory",
          "process.memory_max",
          {{"memory.max", v, "memory.limit_in_bytes", v},
           {"memory.swap.max", "0", "memory.memsw.limit_in_bytes", v, false}}};
}

LimitSpec cpu_weight_spec(uint32_t weight) {
  uint64_t shares = std::max<uint64_t>(2, uint64_t{weight} * 1024 / 100);
  return {"cpu", "process.cpu_weight", {{"cpu.weight", std::to_string(weight), "cpu.shares", std::to_string(shares)}}};
}

std::string CgroupLimit::describe() const {
  if (spec_.settings.empty()) return "none";
  const auto& s = spec_.settings.front();
  switch (mech_) {
    case LimitMechanism::cgroup_v2: return "cgroup v2 " + s.v2_file;
    case LimitMechanism::cgroup_v1: return "cgroup v1 " + s.v1_file;
    case LimitMechanism::none: break;
  }
  return "none";
}

LimitMechanism CgroupLimit::probe(const LimitSpec& spec, const std::string& cgroup2_path, std::string_view mountinfo) {
  std::string file = cgroup2_path + "/" + spec.settings.front().v2_file;
  bool v2 = !cgroup2_path.empty() && ::access(file.c_str(), W_OK) == 0;
  auto v1 = find_cgroup1_mount(mountinfo, spec.controller);
  return choose_limit_mechanism(v2, v1 ? std::string_view(*v1) : std::string_view{});
}

Result<CgroupLimit> CgroupLimit::create(LimitSpec spec, const std::string& cgroup2_path, const std::string& sandbox_id,
                                        std::string_view mountinfo) {
  CgroupLimit l;
  l.spec_ = std::move(spec);
  const LimitSpec& sp = l.spec_;
  auto v1 = find_cgroup1_mount(mountinfo, sp.controller);
  l.mech_ = probe(sp, cgroup2_path, mountinfo);
  if (l.mech_ == LimitMechanism::none)
    return error(fmt::format("{}: no {} controller (cgroup v2 {} not enabled for the sandbox cgroup, no cgroup v1 {} "
                             "hierarchy)",
                             sp.field, sp.controller, sp.controller, sp.controller),
                 fmt::format("enable it: echo +{} > <cgroup2 mount>/cgroup.subtree_control (and in each ancestor), "
                             "or mount a v1 {} hierarchy; or drop {} / use mode: audit",
                             sp.controller, sp.controller, sp.field));
  std::string dir = cgroup2_path;
  if (l.mech_ == LimitMechanism::cgroup_v1) {
    std::string parent = *v1 + "/agentcage";
    if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir(" + parent + ")");
    dir = parent + "/" + sandbox_id;
    if (::mkdir(dir.c_str(), 0755) != 0) return sys_error("mkdir(" + dir + ")");
    l.v1_dir_ = dir;  // owned from here: the destructor removes it on any error below
  }
  for (const auto& s : sp.settings) {
    bool is_v2 = l.mech_ == LimitMechanism::cgroup_v2;
    const std::string& file = is_v2 ? s.v2_file : s.v1_file;
    if (file.empty()) continue;
    std::string path = dir + "/" + file;
    if (!s.required && ::access(path.c_str(), F_OK) != 0) continue;
    if (auto st = write_file(path, is_v2 ? s.v2_value : s.v1_value); !st)
      return error(fmt::format("{}: {}", sp.field, st.error().message()));
  }
  if (l.mech_ == LimitMechanism::cgroup_v1) {
    std::string procs = dir + "/cgroup.procs";
    l.procs_fd_.reset(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (!l.procs_fd_) return sys_error("open(" + procs + ")");
  }
  return l;
}

int CgroupLimit::join() const {
  if (mech_ != LimitMechanism::cgroup_v1) return 0;
  // "0" means the writing task (cgroup v1 and v2 both accept it): no formatting needed.
  if (::write(procs_fd_.get(), "0", 1) != 1) return errno;
  return 0;
}

namespace {
void remove_v1_dir(const std::string& dir) {
  // The v2 cgroup kill took the processes; exiting tasks leave the v1 cgroup shortly after.
  for (int i = 0; i < 2000; ++i) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  spdlog::warn("rmdir({}): {}", dir, strerror(errno));
}
}  // namespace

CgroupLimit::~CgroupLimit() {
  if (v1_dir_.empty()) return;
  procs_fd_.reset();
  remove_v1_dir(v1_dir_);
}

std::string existing_limit(const LimitSpec& spec, const std::string& cgroup2_path, const std::string& sandbox_id,
                           std::string_view mountinfo) {
  const auto& s = spec.settings.front();
  if (!cgroup2_path.empty() && ::access((cgroup2_path + "/" + s.v2_file).c_str(), F_OK) == 0)
    return "cgroup v2 " + s.v2_file;
  auto mnt = find_cgroup1_mount(mountinfo, spec.controller);
  if (mnt && !sandbox_id.empty() && ::access((*mnt + "/agentcage/" + sandbox_id + "/" + s.v1_file).c_str(), F_OK) == 0)
    return "cgroup v1 " + s.v1_file;
  return {};
}

void remove_v1_limit_dirs(const std::string& sandbox_id, std::string_view mountinfo) {
  if (sandbox_id.empty() || sandbox_id.find('/') != std::string::npos || sandbox_id[0] == '.') return;
  for (const char* c : {"pids", "memory", "cpu"}) {
    auto mnt = find_cgroup1_mount(mountinfo, c);
    if (!mnt) continue;
    std::string dir = *mnt + "/agentcage/" + sandbox_id;
    if (::access(dir.c_str(), F_OK) == 0) remove_v1_dir(dir);
  }
}

}  // namespace agentcage::core
