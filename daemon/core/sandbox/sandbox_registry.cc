// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/sandbox_registry.h"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <sstream>

#include "core/events/decoder.h"
#include "core/sandbox/session.h"

namespace agentcage::core {
namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// "Key:\tvalue..." fields of /proc/<pid>/status.
std::optional<std::string> status_field(pid_t pid, const std::string& key) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/status");
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 1);
  return std::nullopt;
}

std::vector<uint32_t> cgroup_pids(const std::string& path) {
  std::vector<uint32_t> pids;
  auto text = read_file(path + "/cgroup.procs");
  if (!text) return pids;
  std::istringstream in(*text);
  uint32_t p;
  while (in >> p) pids.push_back(p);
  return pids;
}

}  // namespace

SandboxRegistry::~SandboxRegistry() {
  std::lock_guard lk(mu_);
  for (auto& [id, e] : entries_) (void)close_locked(e);
}

bool SandboxRegistry::pid_in_sandbox(pid_t pid) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/cgroup");
  if (!text) return false;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.find("/agentcage/") != std::string::npos;
  return false;
}

Result<v1::Sandbox> SandboxRegistry::create(const Peer& peer, const v1::CreateSandboxRequest& req,
                                            const SandboxPolicy* policy) {
  uint64_t key = new_sandbox_key();
  std::string id = sandbox_id_string(key);
  Entry e;
  e.key = key;
  if (policy) {
    if (policy->net) {
      if (!mon_) return error("the profile has a network policy and this daemon runs without its BPF monitor");
      auto c = compile(*policy->net, key);
      if (!c) return std::unexpected(c.error());
      e.net = std::move(*c);
    }
    // The same decisions the launcher's own prepare makes (it confines its child with
    // this policy): prepared here only to know what to attribute, never applied.
    ConfinePolicy cp = policy->confine;
    limit_to_unprivileged(cp, nullptr);
    auto pc = prepare_confinement(cp, probe_kernel_features(), ConfineContext{id, ""});
    if (!pc) return std::unexpected(pc.error());
    e.attribution = std::make_shared<const Attribution>(Attribution{(*pc)->decisions(), e.net.has_value()});
  }
  auto cg = Cgroup::create(parent_ + "/" + id);
  if (!cg) return std::unexpected(cg.error());
  e.cgroup = std::make_unique<Cgroup>(std::move(*cg));
  if (mon_) {
    if (auto st = mon_->track_cgroup(e.cgroup->id(), key); !st) return std::unexpected(st.error());
    // Installed before the launcher can place anything in the cgroup: enforced from the
    // command's first instruction.
    if (e.net) {
      if (auto st = mon_->install_net_policy(key, *e.net); !st) {
        (void)mon_->remove_net_policy(key, *e.net);
        (void)mon_->untrack_cgroup(e.cgroup->id());
        (void)e.cgroup->destroy();
        return std::unexpected(st.error());
      }
    }
  }
  e.owner_pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, peer.pid, 0)));
  auto& i = e.info;
  i.set_id(id);
  i.set_owner_uid(peer.uid);
  i.set_owner_pid(static_cast<uint32_t>(peer.pid));
  i.set_profile(req.profile());
  i.set_workspace(req.workspace());
  *i.mutable_argv() = req.argv();
  i.set_cgroup_path(e.cgroup->path());
  i.set_cgroup_id(e.cgroup->id());
  i.set_created_ns(now_ns());
  i.set_state("running");
  v1::Sandbox out = i;
  std::lock_guard lk(mu_);
  entries_.emplace(id, std::move(e));
  spdlog::info("sandbox {} created for uid {} (pid {})", id, peer.uid, peer.pid);
  return out;
}

Status SandboxRegistry::place(const Peer& peer, const std::string& id, pid_t pid) {
  std::string procs;
  {
    std::lock_guard lk(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || !it->second.cgroup) return error("no running sandbox " + id);
    procs = it->second.cgroup->path() + "/cgroup.procs";
  }
  // Only the launcher's own held child may be placed: the caller cannot pull an
  // unrelated process (another user's, or the daemon's) into a sandbox.
  auto ppid = status_field(pid, "PPid");
  auto uid = status_field(pid, "Uid");
  if (!ppid || !uid) return error("process " + std::to_string(pid) + " does not exist");
  if (std::stol(*ppid) != peer.pid) return error("process " + std::to_string(pid) + " is not a child of the caller");
  if (std::stoul(*uid) != peer.uid && !peer.root())
    return error("process " + std::to_string(pid) + " does not run as the caller's uid");
  return write_file(procs, std::to_string(pid));
}

Status SandboxRegistry::close_locked(Entry& e) {
  if (!e.cgroup) return {};
  Status st = e.cgroup->destroy();
  if (mon_ && e.net) (void)mon_->remove_net_policy(e.key, *e.net);
  e.net.reset();
  if (mon_) (void)mon_->untrack_cgroup(e.cgroup->id());
  e.cgroup.reset();
  e.owner_pidfd.reset();
  e.info.set_state("closed");
  spdlog::info("sandbox {} closed", e.info.id());
  return st;
}

Status SandboxRegistry::close(const std::string& id) {
  std::lock_guard lk(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return error("no sandbox " + id);
  return close_locked(it->second);
}

Result<v1::Sandbox> SandboxRegistry::get(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return error("no sandbox " + id);
  v1::Sandbox s = it->second.info;
  if (it->second.cgroup)
    for (auto p : cgroup_pids(it->second.cgroup->path())) s.add_pids(p);
  return s;
}

std::vector<v1::Sandbox> SandboxRegistry::list(std::optional<uid_t> uid, bool include_closed) const {
  std::vector<v1::Sandbox> out;
  std::lock_guard lk(mu_);
  for (const auto& [id, e] : entries_) {
    if (uid && e.info.owner_uid() != *uid) continue;
    if (!include_closed && !e.cgroup) continue;
    out.push_back(e.info);
    if (e.cgroup)
      for (auto p : cgroup_pids(e.cgroup->path())) out.back().add_pids(p);
  }
  return out;
}

std::shared_ptr<const SandboxRegistry::Attribution> SandboxRegistry::attribution(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return nullptr;
  return it->second.attribution;
}

std::optional<uid_t> SandboxRegistry::owner(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return it->second.info.owner_uid();
}

size_t SandboxRegistry::running() const {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (const auto& [id, e] : entries_) n += e.cgroup ? 1 : 0;
  return n;
}

int SandboxRegistry::reap_orphans() {
  int n = 0;
  std::lock_guard lk(mu_);
  for (auto& [id, e] : entries_) {
    if (!e.cgroup || !e.owner_pidfd) continue;
    if (::syscall(SYS_pidfd_send_signal, e.owner_pidfd.get(), 0, nullptr, 0) == 0) continue;
    if (errno != ESRCH) continue;
    spdlog::warn("sandbox {}: launcher {} exited without closing it; closing", id, e.info.owner_pid());
    (void)close_locked(e);
    ++n;
  }
  return n;
}

}  // namespace agentcage::core
