// SPDX-License-Identifier: Apache-2.0
#include "core/sandbox/sandbox_registry.h"
#include "core/sandbox/session.h"

#include "core/sandbox/record_failure.h"
#include "core/store/store.h"
#include "core/base/text.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <dirent.h>
#include <fcntl.h>
#include <cstring>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <filesystem>
#include <sstream>

#include "core/events/decoder.h"
#include "core/sandbox/session.h"
#include "core/confine/launcher.h"
#include "core/base/clock.h"
#include "core/base/fs.h"

namespace agentcage::core {
namespace {

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

// Field 22 of /proc/<pid>/stat: the start time in clock ticks since boot. With the pid it
// names one process for the life of the system, where the pid alone may be reused.
std::optional<uint64_t> start_ticks(pid_t pid) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return std::nullopt;
  auto rp = text->rfind(')');  // comm may contain spaces and parentheses
  if (rp == std::string::npos || rp + 2 > text->size()) return std::nullopt;
  std::istringstream in(text->substr(rp + 2));
  std::string skip;
  for (int field = 3; field < 22; ++field) in >> skip;
  uint64_t v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

// Written whole or not at all: a daemon killed mid-write leaves the previous record.
Status write_atomically(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return sys_error("open(" + tmp + ")");
  for (size_t off = 0; off < data.size();) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error("write(" + tmp + ")");
    off += static_cast<size_t>(n);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_error("rename(" + tmp + ", " + path + ")");
  return {};
}

}  // namespace

SandboxRegistry::~SandboxRegistry() {
  std::lock_guard lk(mu_);
  for (auto& [id, e] : entries_) (void)close_locked(e);
}

namespace {

// Whether /proc/<pid>/cgroup puts pid in a sandbox; nullopt when it cannot be read.
std::optional<bool> cgroup_says_sandboxed(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto text = read_file("/proc/" + std::to_string(pid) + "/cgroup");
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.find("/agentcage/") != std::string::npos;
  return false;
}

}  // namespace

bool SandboxRegistry::sandboxed_at_accept(pid_t pid) { return cgroup_says_sandboxed(pid).value_or(true); }

bool SandboxRegistry::pid_in_sandbox(pid_t pid) { return cgroup_says_sandboxed(pid).value_or(false); }

// mode: audit: what the sandbox's seccomp filter only logs is recorded by the sys_exit
// program instead (AC_SB_AUDIT_SYSCALLS with the filter's deny set, installed with the
// cgroup's tracking).
void SandboxRegistry::audit_syscalls(Entry& e, const ConfineDecisions& d) const {
  if (!d.policy.audit_mode || !mon_) return;
  e.sandbox_flags |= AC_SB_AUDIT_SYSCALLS;
  e.audit_syscalls.clear();
  for (const auto& sd : d.seccomp_denied) e.audit_syscalls.push_back(sd.nr);
}

Status SandboxRegistry::apply_policy(Entry& e, const SandboxPolicy& policy, bool confined) const {
  if (policy.net) {
    if (!mon_) return error("the sandbox has a network policy and this daemon runs without its BPF monitor");
    auto c = compile(*policy.net, e.key);
    if (!c) return std::unexpected(c.error());
    e.net = std::move(*c);
    // Its resolver: bound now (the kernel policy names its port), serving from here on;
    // nothing can ask before the cgroup has a process.
    if (!policy.net->domains.empty()) {
      auto g = DnsGuard::create(dns_guard_options(*policy.net, e.info.id(), e.key, e.info.cgroup_path(), *mon_,
                                                  [this](v1::Event ev) {
                                                    if (post_event_) post_event_(std::move(ev));
                                                  }));
      if (!g) return std::unexpected(g.error());
      e.dns = std::move(*g);
      e.dns_names = e.dns->names();
      e.net->sandbox.dns_port = e.dns->port();
      e.net->sandbox.dns_port6 = e.dns->port6();
      e.net->sandbox.name_port = e.dns->name_port();
      e.net->sandbox.name_port6 = e.dns->name_port6();
      e.dns->start();
    }
  }
  if (policy.exec_kill) {
    if (!mon_) return error("the profile kills on a refused exec (actions.exec: kill), which the BPF monitor does, "
                            "and this daemon runs without it");
    e.sandbox_flags |= AC_SB_EXEC_KILL;
  }
  if (!confined) return {};  // network options alone: the launcher confines nothing else
  // The same decisions the launcher's own prepare makes (it confines its child with
  // this policy): prepared here only to know what to attribute, never applied.
  ConfinePolicy cp = policy.confine;
  limit_to_unprivileged(cp, nullptr);
  auto pc = prepare_confinement(cp, probe_kernel_features(), ConfineContext{e.info.id(), ""});
  if (!pc) return std::unexpected(pc.error());
  ConfineDecisions d = (*pc)->decisions();
  audit_syscalls(e, d);
  if (e.launch) {
    // Re-adopted after a restart: this daemon's predecessor launched it with root's limits
    // (cgroups, not the unprivileged fallback prepared above); what the kernel holds now is
    // what denials and OOM kills are judged by.
    d.policy.max_pids = policy.confine.max_pids;
    d.policy.memory_max = policy.confine.memory_max;
    d.memory_by.clear();
    if (d.policy.memory_max)
      if (auto mi = read_file("/proc/self/mountinfo"))
        d.memory_by = existing_limit(memory_limit_spec(d.policy.memory_max), e.info.cgroup_path(), e.info.id(), *mi);
  }
  e.attribution = std::make_shared<const Attribution>(Attribution{std::move(d), e.net.has_value()});
  e.provenance.clear();
  for (const auto& p : (*pc)->provenance())
    e.provenance.push_back(fmt::format("{}: {}{}", p.mechanism, p.detail, p.enforced ? "" : " (not enforced)"));
  return {};
}

namespace {
std::string deterministic(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&cos);
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) { return to_hex(chain_hash("", bytes)); }
}  // namespace

void set_resolved_profile(v1::SandboxChange& c, const v1::Profile& p) {
  c.set_resolved_profile(deterministic(p));
  c.set_profile_digest(sha256_hex(c.resolved_profile()));
}

void SandboxRegistry::record(const Entry& e, const std::string& phase, const std::string& reason,
                             std::optional<int> exit_status) const {
  if (!recorder_) return;
  v1::Event ev;
  ev.set_time_ns(wall_ns());
  ev.set_sandbox_id(e.info.id());
  // The process is the sandbox's client: who asked for it.
  ev.mutable_process()->set_pid(e.info.owner_pid());
  ev.mutable_process()->set_uid(e.info.owner_uid());
  auto* c = ev.mutable_sandbox();
  c->set_phase(phase);
  *c->mutable_sandbox() = e.info;
  if (!e.resolved_profile.empty()) {
    c->set_resolved_profile(e.resolved_profile);
    c->set_profile_digest(sha256_hex(e.resolved_profile));
  }
  for (const auto& p : e.provenance) c->add_provenance(p);
  if (phase == "closed" || phase == "killed") c->set_ended_ns(ev.time_ns());
  c->set_reason(reason);
  if (exit_status) {
    c->set_exit_known(true);
    c->set_exit_status(*exit_status);
  }
  recorder_(std::move(ev), e.owner_start_ticks);
}

Result<v1::Sandbox> SandboxRegistry::create(const Peer& peer, const v1::CreateSandboxRequest& req,
                                            const SandboxPolicy* policy, const v1::Profile* profile) {
  // One user cannot exhaust the BPF maps or the cgroups: a quota on running sandboxes,
  // creates in flight included (concurrent requests do not slip past it).
  if (max_per_user_ && !peer.root()) {
    std::lock_guard lk(mu_);
    size_t n = creating_[peer.uid];
    for (const auto& [id, e] : entries_) n += e.cgroup && e.info.owner_uid() == peer.uid;
    if (n >= max_per_user_) {
      if (!creating_[peer.uid]) creating_.erase(peer.uid);
      return error(fmt::format("uid {} already runs {} sandboxes ({} {})", peer.uid, n, kSandboxQuota, max_per_user_),
                   "close one first");
    }
    ++creating_[peer.uid];
  }
  struct Done {
    SandboxRegistry* r;
    const Peer& p;
    ~Done() {
      if (!r->max_per_user_ || p.root()) return;
      std::lock_guard lk(r->mu_);
      if (--r->creating_[p.uid] == 0) r->creating_.erase(p.uid);
    }
  } done{this, peer};
  auto on_failure = record_failure_action(profile);
  if (on_failure != v1::Profile::RECORD_FAILURE_CONTINUE) {
    std::lock_guard lk(mu_);
    if (!recording_failure_.empty()) return std::unexpected(record_failure_refusal(*profile, recording_failure_));
  }
  uint64_t key = new_sandbox_key();
  std::string id = sandbox_id_string(key);
  Entry e;
  e.key = key;
  e.on_record_failure = on_failure;
  auto& i = e.info;
  i.set_id(id);
  i.set_owner_uid(peer.uid);
  i.set_owner_pid(static_cast<uint32_t>(peer.pid));
  i.set_profile(req.profile());
  i.set_workspace(req.workspace());
  *i.mutable_argv() = req.argv();
  i.set_cgroup_path(parent_ + "/" + id);
  i.set_created_ns(wall_ns());
  i.set_state("running");
  if (req.has_launch()) {
    if (!policy || !profile) return error("launch: needs a profile (without one the client starts its command)");
    e.launch.emplace();
  }
  if (policy)
    if (auto st = apply_policy(e, *policy, profile != nullptr && !e.launch); !st) return std::unexpected(st.error());
  e.owner_pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, peer.pid, 0)));
  if (!e.owner_pidfd) return sys_error("pidfd_open(" + std::to_string(peer.pid) + ")");
  auto owner_ticks = start_ticks(peer.pid);
  if (!owner_ticks) return error("process " + std::to_string(peer.pid) + " exited while creating its sandbox");

  v1::SandboxRecord rec;
  rec.set_key(key);
  rec.set_owner_start_ticks(*owner_ticks);
  e.owner_start_ticks = *owner_ticks;
  if (profile) *rec.mutable_profile() = *profile;
  if (req.has_network()) *rec.mutable_network() = req.network();
  rec.set_launched(e.launch.has_value());
  auto write_record = [&]() -> Status {
    if (state_dir_.empty()) return {};
    *rec.mutable_sandbox() = i;
    return write_atomically(record_path(id), rec.SerializeAsString());
  };
  // Recorded first: a daemon killed from here on leaves a record, and its successor
  // finds (and kills or re-adopts) whatever part of the sandbox exists.
  if (auto st = write_record(); !st) return std::unexpected(st.error());
  auto fail = [&](Error err) -> Result<v1::Sandbox> {
    if (e.cgroup) (void)e.cgroup->destroy();
    if (!state_dir_.empty()) ::unlink(record_path(id).c_str());
    return std::unexpected(std::move(err));
  };
  auto cg = Cgroup::create(i.cgroup_path());
  if (!cg) return fail(cg.error());
  e.cgroup = std::make_unique<Cgroup>(std::move(*cg));
  i.set_cgroup_id(e.cgroup->id());
  if (e.launch)
    if (auto st = prepare_launch(e, *policy, peer, req.launch()); !st) return fail(st.error());
  if (auto st = write_record(); !st) return fail(st.error());  // now with the cgroup id
  if (mon_) {
    if (auto st = mon_->track_cgroup(e.cgroup->id(), key, e.sandbox_flags); !st) return fail(st.error());
    if (e.sandbox_flags & AC_SB_AUDIT_SYSCALLS)
      if (auto st = mon_->set_audit_syscalls(key, e.audit_syscalls); !st) {
        (void)mon_->untrack_cgroup(e.cgroup->id(), e.key);
        return fail(st.error());
      }
    // Installed before the launcher can place anything in the cgroup: enforced from the
    // command's first instruction.
    if (e.net) {
      if (auto st = mon_->install_net_policy(key, *e.net); !st) {
        e.dns.reset();  // first: a resolver still running could learn after the removal
        (void)mon_->remove_net_policy(key, *e.net);
        (void)mon_->untrack_cgroup(e.cgroup->id(), e.key);
        return fail(st.error());
      }
    }
  }
  v1::Sandbox out = i;
  if (profile) e.resolved_profile = deterministic(*profile);
  std::lock_guard lk(mu_);
  auto [it, _] = entries_.emplace(id, std::move(e));
  record(it->second, "created");
  spdlog::info("sandbox {} created for uid {} (pid {})", id, peer.uid, peer.pid);
  return out;
}

Status SandboxRegistry::prepare_launch(Entry& e, const SandboxPolicy& policy, const Peer& peer,
                                       const v1::LaunchSpec& spec) {
  auto& l = *e.launch;
  l.env = policy.env.env;
  l.pass_fds.assign(spec.pass_fds().begin(), spec.pass_fds().end());
  // The groups and the working directory are the caller's own: the pid it connected
  // with still names a process of that uid (not one that reused the pid).
  auto uid_line = status_field(peer.pid, "Uid");
  if (!uid_line || std::stoul(*uid_line) != peer.uid)
    return error("process " + std::to_string(peer.pid) + " is gone or no longer runs as uid " + std::to_string(peer.uid));
  std::error_code ec;
  auto cwd = std::filesystem::read_symlink("/proc/" + std::to_string(peer.pid) + "/cwd", ec);
  l.cwd = ec ? "/" : cwd.string();
  ConfinePolicy cp = policy.confine;
  std::vector<gid_t> groups;
  if (auto g = status_field(peer.pid, "Groups")) {
    std::istringstream in(*g);
    for (gid_t x; in >> x;) groups.push_back(x);
  }
  std::vector<std::string> notes;
  if (auto st = confine_for_caller(cp, peer.uid, peer.gid, groups, &notes); !st) return st;
  for (const auto& n : notes) spdlog::info("sandbox {}: {}", e.info.id(), n);
  if (e.info.argv_size() == 0) return error("argv: a launched sandbox needs its command");
  if (auto ok = check_command_allowed(cp, e.info.argv(0), &l.env); !ok) return ok;
  l.pid_namespace = true;  // always: the init that holds the client's connection is its pid 1
  cp.namespaces.pid = true;
  auto pc = prepare_confinement(cp, probe_kernel_features(), ConfineContext{e.info.id(), e.cgroup->path(), kRunDir, l.cwd});
  if (!pc) return std::unexpected(pc.error());
  e.attribution = std::make_shared<const Attribution>(Attribution{(*pc)->decisions(), e.net.has_value()});
  audit_syscalls(e, e.attribution->decisions);
  e.provenance.clear();
  for (const auto& p : (*pc)->provenance())
    e.provenance.push_back(fmt::format("{}: {}{}", p.mechanism, p.detail, p.enforced ? "" : " (not enforced)"));
  e.conf = std::shared_ptr<PreparedConfinement>(std::move(*pc));
  // Before the command exists: what the git configuration of its writable trees runs now,
  // read as the user the command runs as (the files it writes are that user's).
  e.git_review = policy.git_review;
  e.git_uid = cp.uid.value_or(peer.uid);
  e.git_before.clear();
  for (const auto& w : e.git_review) e.git_before.push_back(snapshot_git_config(w, e.git_uid));
  e.git_before_known = true;
  return {};
}

Result<pid_t> SandboxRegistry::launch(const Peer& peer, const std::string& id, int conn, const std::vector<int>& fds) {
  std::unique_lock lk(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.cgroup) return error("no running sandbox " + id);
  Entry& e = it->second;
  if (!e.launch) return error("sandbox " + id + " was not created for the daemon to launch");
  if (peer.pid != static_cast<pid_t>(e.info.owner_pid()) || peer.uid != e.info.owner_uid())
    return error("sandbox " + id + " is launched only by the process that created it");
  if (e.launch->started) return error("sandbox " + id + " was launched already");
  e.launch->started = true;
  if (fds.size() != 3 + e.launch->pass_fds.size())
    return error(fmt::format("launch: {} descriptors sent, {} expected (0-2 and the --pass-fd ones)", fds.size(),
                             3 + e.launch->pass_fds.size()));
  SpawnOptions so;
  for (const auto& a : e.info.argv()) so.argv.push_back(a);
  so.cgroup_fd = e.cgroup->fd();
  so.cgroup_path = e.cgroup->path();
  so.env = e.launch->env;
  so.pid_namespace = e.launch->pid_namespace;
  so.supervisor_fd = conn;
  for (int i = 0; i < 3; ++i) so.fd_map.emplace_back(fds[static_cast<size_t>(i)], i);
  for (size_t i = 0; i < e.launch->pass_fds.size(); ++i) so.fd_map.emplace_back(fds[3 + i], e.launch->pass_fds[i]);
  // No chdir as root here: the confinement enters the caller's working directory after
  // the uid switch, as the caller (PreparedConfinement::cwd_).
  std::shared_ptr<PreparedConfinement> conf = e.conf;
  so.child_setup = [c = conf.get()](const char** what) { return apply_in_child(*c, what); };
  // Spawned without the registry's lock: a command slow to reach its exec (a FUSE path,
  // a stopped child) holds up this launch only, never every other call.
  lk.unlock();
  auto child = spawn(so);
  lk.lock();
  if (!child) return std::unexpected(child.error());
  if (!e.cgroup) {  // closed meanwhile: its cgroup kill ended the init; reap it
    ::waitpid(child->pid, nullptr, 0);
    return error("sandbox " + id + " was closed while its command started");
  }
  e.init_pid = child->pid;
  spdlog::info("sandbox {}: launched {} for uid {} (init pid {})", id, e.info.argv(0), peer.uid, child->pid);
  return child->pid;
}

uint32_t SandboxRegistry::launcher_pid(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return 0;
  return it->second.launch ? static_cast<uint32_t>(::getpid()) : it->second.info.owner_pid();
}

Status SandboxRegistry::adopt_record(const v1::SandboxRecord& rec, bool enforced, Entry& e) {
  e.key = rec.key();
  e.info = rec.sandbox();
  e.owner_start_ticks = rec.owner_start_ticks();
  if (rec.launched()) e.launch.emplace().started = true;
  const auto& i = e.info;
  if (i.cgroup_id() == 0) return error("it was being created when the previous daemon stopped");
  auto cg = Cgroup::adopt(i.cgroup_path(), i.cgroup_id());
  if (!cg) return error("its cgroup is gone (" + cg.error().message() + ")");
  e.cgroup = std::make_unique<Cgroup>(std::move(*cg));
  if (!enforced)
    return error("its policy was not enforced while no daemon ran (the pinned BPF programs were lost or are "
                 "from another build of agentcaged)");
  pid_t owner = static_cast<pid_t>(i.owner_pid());
  e.owner_pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, owner, 0)));
  // Opened first, checked second: if the start time matches now, the pidfd is that process.
  auto ticks = start_ticks(owner);
  if (!e.owner_pidfd || !ticks || *ticks != rec.owner_start_ticks())
    return error("its launcher (pid " + std::to_string(owner) + ") exited while no daemon ran");
  if (rec.has_profile()) {
    auto policy = compile_profile(rec.profile(), PolicyContext{});
    if (!policy) return error("its profile no longer compiles: " + policy.error().message());
    // What the git configuration ran before the command went with the previous daemon: at
    // close every code-running key found is reported, said so.
    e.git_review = policy->git_review;
    e.git_uid = i.owner_uid();
    if (auto st = apply_policy(e, *policy, true); !st) return error("its policy: " + st.error().message());
  } else if (rec.has_network()) {
    auto net = net_policy_from_flags(net_flags(rec.network()));
    if (!net) return error("its network options no longer parse: " + net.error().message());
    if (auto st = apply_policy(e, SandboxPolicy{.net = std::move(*net)}, false); !st)
      return error("its network policy: " + st.error().message());
  }
  if (mon_) {
    // Both already in the adopted maps; written again so what is enforced is exactly the
    // policy this daemon will later remove.
    if (auto st = mon_->track_cgroup(e.cgroup->id(), e.key, e.sandbox_flags); !st) return std::unexpected(st.error());
    if (e.sandbox_flags & AC_SB_AUDIT_SYSCALLS)
      if (auto st = mon_->set_audit_syscalls(e.key, e.audit_syscalls); !st) return std::unexpected(st.error());
    if (e.net)
      if (auto st = mon_->install_net_policy(e.key, *e.net); !st) return std::unexpected(st.error());
  }
  return {};
}

SandboxRegistry::Readopted SandboxRegistry::readopt(bool enforced) {
  Readopted out;
  if (state_dir_.empty()) return out;
  DIR* d = ::opendir(state_dir_.c_str());
  if (!d) return out;
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) names.emplace_back(de->d_name);
  ::closedir(d);
  for (const auto& n : names) {
    std::string path = state_dir_ + "/" + n;
    if (n.size() > 4 && n.ends_with(".tmp")) ::unlink(path.c_str());  // a write cut short
    if (n.size() < 4 || !n.ends_with(".pb")) continue;
    v1::SandboxRecord rec;
    auto data = read_file(path);
    if (!data || !rec.ParseFromString(*data) || rec.sandbox().id().empty()) {
      spdlog::error("state record {} is unreadable; removed (no sandbox to re-adopt from it)", path);
      ::unlink(path.c_str());
      continue;
    }
    Entry e;
    const std::string id = rec.sandbox().id();
    if (auto st = adopt_record(rec, enforced, e); !st) {
      spdlog::error("sandbox {}: killed: {}", id, st.error().message());
      out.killed.emplace_back(id, st.error().message());
      e.dns.reset();  // before the learned addresses are removed: it could learn again
      if (mon_) {
        if (e.cgroup) (void)mon_->untrack_cgroup(e.cgroup->id(), e.key);
        (void)mon_->remove_net_policy(e.key, e.net ? *e.net : CompiledNetPolicy{});
      }
      if (e.cgroup)
        if (auto k = e.cgroup->destroy(); !k) spdlog::error("sandbox {}: {}", id, k.error().message());
      // Its v1 limit cgroups (pids, memory, cpu) were its launching daemon's to remove.
      if (auto mi = read_file("/proc/self/mountinfo")) remove_v1_limit_dirs(id, *mi);
      e.cgroup.reset();
      e.net.reset();
      e.owner_pidfd.reset();
      e.info.set_state("closed");
      ::unlink(path.c_str());
    } else {
      spdlog::info("sandbox {} re-adopted (uid {}, launcher pid {})", id, e.info.owner_uid(), e.info.owner_pid());
      out.adopted.push_back(id);
    }
    if (rec.has_profile()) {
      e.resolved_profile = deterministic(rec.profile());
      if (rec.profile().on_record_failure() != v1::Profile::RECORD_FAILURE_UNSPECIFIED)
        e.on_record_failure = rec.profile().on_record_failure();
    }
    std::lock_guard lk(mu_);
    auto [it, _] = entries_.emplace(id, std::move(e));
    if (it->second.cgroup) record(it->second, "readopted");
    else record(it->second, "killed", out.killed.empty() ? "" : out.killed.back().second);
  }
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
  {
    std::lock_guard lk(mu_);
    if (auto it = entries_.find(id); it != entries_.end() && it->second.launch)
      return error("sandbox " + id + " is launched by the daemon: nothing else is placed in it");
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

Status SandboxRegistry::close_locked(Entry& e, std::optional<int> exit_status) {
  if (!e.cgroup) return {};
  Status st = e.cgroup->destroy();
  e.dns.reset();  // stops the resolver: nothing is left in the sandbox to ask it
  if (mon_ && e.net) (void)mon_->remove_net_policy(e.key, *e.net);
  e.net.reset();
  if (mon_) (void)mon_->untrack_cgroup(e.cgroup->id(), e.key);
  e.cgroup.reset();
  // After the kill: the v1 limit cgroups and the view's scratch directory go with it. A
  // sandbox readopted after a restart has no prepared confinement: its v1 directories
  // (named by its id) are removed here instead, or each restart would leak them.
  if (e.conf) {
    e.conf.reset();
  } else if (auto mi = read_file("/proc/self/mountinfo")) {
    remove_v1_limit_dirs(e.info.id(), *mi);
  }
  if (e.init_pid > 0) {
    // The cgroup kill ended the init; reap it (not ours after a daemon restart: ECHILD).
    for (int i = 0; i < 100 && ::waitpid(e.init_pid, nullptr, WNOHANG) == 0; ++i) ::usleep(10'000);
    e.init_pid = 0;
  }
  e.owner_pidfd.reset();
  // Nothing of the sandbox runs any more (the kill above): what it left in the git
  // configuration is final. Recorded before the closing record, so `run` relays it.
  if (recorder_) {
    for (size_t i = 0; i < e.git_review.size(); ++i) {
      GitConfigSnapshot before = e.git_before_known && i < e.git_before.size() ? e.git_before[i] : GitConfigSnapshot{};
      for (const auto& c : git_config_changes(before, snapshot_git_config(e.git_review[i], e.git_uid)))
        recorder_(git_change_event(c, e.info.id(), "", !e.git_before_known), 0);
    }
  }
  e.git_review.clear();
  e.info.set_state("closed");
  if (!state_dir_.empty()) ::unlink(record_path(e.info.id()).c_str());
  record(e, "closed", st ? "" : st.error().message(), exit_status);
  spdlog::info("sandbox {} closed", e.info.id());
  return st;
}

Status SandboxRegistry::close(const std::string& id, std::optional<int> exit_status) {
  std::lock_guard lk(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return error("no sandbox " + id);
  return close_locked(it->second, exit_status);
}

uint64_t SandboxRegistry::owner_start_ticks(const std::string& id) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? 0 : it->second.owner_start_ticks;
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

std::string SandboxRegistry::dns_name(const std::string& id, const std::string& address, uint64_t ktime_ns) const {
  std::lock_guard lk(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() || !it->second.dns_names ? std::string()
                                                      : it->second.dns_names->name_of(address, ktime_ns);
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
    // A pidfd is readable once its process has exited, zombie or not (a signal of 0 would
    // still reach a zombie whose parent has not waited for it).
    struct pollfd pfd{e.owner_pidfd.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 0) != 1) continue;
    spdlog::warn("sandbox {}: launcher {} exited without closing it; closing", id, e.info.owner_pid());
    (void)close_locked(e);
    ++n;
  }
  return n;
}

void SandboxRegistry::recording_failed(bool failing, const std::string& why) {
  std::lock_guard lk(mu_);
  recording_failure_ = failing ? why : "";
  for (auto& [id, e] : entries_)
    if (e.cgroup) e.frozen = apply_record_failure(e.on_record_failure, id, e.cgroup->path(), failing, e.frozen, why);
}

}  // namespace agentcage::core
