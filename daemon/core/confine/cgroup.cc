// SPDX-License-Identifier: Apache-2.0
#include "core/confine/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

namespace agentcage::core {

Result<Cgroup> Cgroup::create(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return sys_error("mkdir(" + std::filesystem::path(path).parent_path().string() + ")", ec.value());
  if (::mkdir(path.c_str(), 0755) != 0)
    return sys_error("mkdir(" + path + ")", errno,
                     errno == EACCES || errno == EPERM ? "creating a cgroup needs root (or a delegated cgroup subtree)"
                                                      : "");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    int e = errno;
    ::rmdir(path.c_str());
    return sys_error("open(" + path + ")", e);
  }
  auto id = cgroup_id_of(path);
  if (!id) {
    ::rmdir(path.c_str());
    return std::unexpected(id.error());
  }
  return Cgroup(path, std::move(fd), *id);
}

Result<Cgroup> Cgroup::adopt(const std::string& path, uint64_t expected_id) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return sys_error("open(" + path + ")");
  auto id = cgroup_id_of(path);
  if (!id) return std::unexpected(id.error());
  if (*id != expected_id)
    return error("cgroup " + path + " has id " + std::to_string(*id) + ", not " + std::to_string(expected_id));
  return Cgroup(path, std::move(fd), *id);
}

Cgroup::~Cgroup() {
  if (fd_) (void)destroy();
}

Status Cgroup::kill_all() { return kill_cgroup(path_); }

Status kill_cgroup(const std::string& path_) {
  // cgroup.kill (Linux 5.14+) kills the whole subtree atomically, racing no fork.
  if (::access((path_ + "/cgroup.kill").c_str(), W_OK) == 0) return write_file(path_ + "/cgroup.kill", "1");
  // Fallback: freeze-free loop over cgroup.procs until it stays empty.
  for (int round = 0; round < 100; ++round) {
    auto procs = read_file(path_ + "/cgroup.procs");
    if (!procs) return std::unexpected(procs.error());
    if (procs->empty()) return {};
    std::istringstream in(*procs);
    pid_t pid;
    while (in >> pid) ::kill(pid, SIGKILL);
  }
  return error("cgroup " + path_ + ": processes keep appearing after SIGKILL");
}

Result<bool> Cgroup::empty() const {
  auto ev = read_file(path_ + "/cgroup.events");
  if (!ev) return std::unexpected(ev.error());
  return ev->find("populated 0") != std::string::npos;
}

Status Cgroup::destroy(std::chrono::milliseconds timeout) {
  if (!fd_) return {};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  Status st = kill_all();
  for (;;) {
    auto e = empty();
    if (!e) {
      st = std::unexpected(e.error());
      break;
    }
    if (*e) break;
    if (std::chrono::steady_clock::now() > deadline) {
      st = error("cgroup " + path_ + ": processes still inside after " + std::to_string(timeout.count()) + " ms");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  fd_.reset();
  // rmdir can race the last task's final exit bookkeeping: retry briefly on EBUSY.
  for (int i = 0; i < 500; ++i) {
    if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return st;
    if (errno != EBUSY) return sys_error("rmdir(" + path_ + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return sys_error("rmdir(" + path_ + ")", EBUSY);
}

}  // namespace agentcage::core
