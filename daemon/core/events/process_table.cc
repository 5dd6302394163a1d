// SPDX-License-Identifier: Apache-2.0
#include "core/events/process_table.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fmt/format.h>
#include <memory>
#include <sstream>

#include "core/base/fs.h"
#include "core/base/mountinfo.h"
#include "core/events/decoder.h"

namespace agentcage::core {
namespace {

std::string read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

uint64_t ns_per_tick() {
  static const uint64_t v = 1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  return v;
}

bool parse_u64(std::string_view s, uint64_t& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// pid, comm, ppid, start time and exec_id from <dir>/stat alone: enough to name a parent.
Result<ProcessInfo> read_proc_stat(const std::string& dir, uint32_t pid, const std::string& boot_id) {
  auto stat = read_file(dir + "/stat");
  if (!stat) return std::unexpected(stat.error());
  // "pid (comm) S ppid ...": comm may hold spaces and ')', so split at the last ')'.
  size_t open = stat->find('('), close = stat->rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return error(fmt::format("{}/stat: no '(comm)' field", dir));
  ProcessInfo p;
  p.pid = pid;
  p.comm = stat->substr(open + 1, close - open - 1);
  std::istringstream rest(stat->substr(close + 1));
  std::vector<std::string> f;
  for (std::string tok; rest >> tok;) f.push_back(tok);
  // f[0] is field 3 (state); ppid is field 4, starttime field 22 (proc(5)).
  uint64_t ppid = 0, start_ticks = 0;
  if (f.size() < 20 || !parse_u64(f[1], ppid) || !parse_u64(f[19], start_ticks))
    return error(fmt::format("{}/stat: expected ppid (field 4) and starttime (field 22)", dir));
  p.ppid = static_cast<uint32_t>(ppid);
  p.start_time_ns = start_ticks * ns_per_tick();
  p.exec_id = make_exec_id(boot_id, pid, p.start_time_ns);
  return p;
}

}  // namespace

Result<ProcessInfo> ProcessTable::read_proc_entry(const std::string& dir, uint32_t pid) const {
  auto stat = read_proc_stat(dir, pid, boot_id_);
  if (!stat) return std::unexpected(stat.error());
  ProcessInfo p = std::move(*stat);

  if (auto status = read_file(dir + "/status")) {
    std::istringstream in(*status);
    for (std::string line; std::getline(in, line);) {
      uint64_t v = 0;
      auto first_number = [&](std::string_view key) {
        if (line.rfind(key, 0) != 0) return false;
        std::istringstream ls(line.substr(key.size()));
        std::string tok;
        return ls >> tok && parse_u64(tok, v);
      };
      if (first_number("Uid:")) p.uid = static_cast<uint32_t>(v);
      if (first_number("Gid:")) p.gid = static_cast<uint32_t>(v);
    }
  }
  if (auto cmd = read_file(dir + "/cmdline")) {
    size_t i = 0;
    while (i < cmd->size()) {
      size_t end = cmd->find('\0', i);
      if (end == std::string::npos) end = cmd->size();
      p.argv.push_back(cmd->substr(i, end - i));
      i = end + 1;
    }
  }
  p.binary = read_link(dir + "/exe");  // empty for kernel threads
  p.cwd = read_link(dir + "/cwd");
  return p;
}

Result<size_t> ProcessTable::seed_from_proc(const std::string& proc_root) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(proc_root.c_str()), closedir);
  if (!d) return sys_error("opendir(" + proc_root + ")");
  std::vector<ProcessInfo> found;
  while (dirent* e = readdir(d.get())) {
    uint64_t pid = 0;
    if (!parse_u64(e->d_name, pid) || pid == 0 || pid > UINT32_MAX) continue;
    auto p = read_proc_entry(proc_root + "/" + e->d_name, static_cast<uint32_t>(pid));
    if (p) found.push_back(std::move(*p));  // gone meanwhile: skip
  }
  size_t n = found.size();
  for (auto& p : found) by_pid_[p.pid] = std::move(p);
  // Parents are known only once every entry is in.
  for (auto& [pid, p] : by_pid_)
    if (auto it = by_pid_.find(p.ppid); it != by_pid_.end() && p.parent_exec_id.empty())
      p.parent_exec_id = it->second.exec_id;
  return n;
}

void ProcessTable::upsert(ProcessInfo p) {
  uint32_t pid = p.pid;
  by_pid_[pid] = std::move(p);
}

const ProcessInfo* ProcessTable::find(uint32_t pid) const {
  auto it = by_pid_.find(pid);
  return it == by_pid_.end() ? nullptr : &it->second;
}

// The exec_id of pid's parent `ppid`, from the table or, for a parent it never saw (started
// after the seed and not tracked: a daemon client that launched a sandbox), from
// proc_root. A /proc entry that started after the event (ktime_ns, CLOCK_BOOTTIME) is a
// later process with a reused pid, not the parent: then the parent stays unknown.
std::string ProcessTable::parent_exec_id_of(uint32_t ppid, uint32_t pid, uint64_t ktime_ns) const {
  if (ppid == 0 || ppid == pid) return {};
  if (auto it = by_pid_.find(ppid); it != by_pid_.end()) return it->second.exec_id;
  if (proc_root_.empty()) return {};
  auto p = read_proc_stat(proc_root_ + "/" + std::to_string(ppid), ppid, boot_id_);
  if (!p || (ktime_ns && p->start_time_ns > ktime_ns)) return {};
  return p->exec_id;
}

// The process that acted, read from proc_root when the table never saw it (a parent that
// forks into a sandbox without being tracked itself); null when unknown. Kept: its fork
// is the first of a tracked subtree, whose later events find it here.
const ProcessInfo* ProcessTable::find_or_read(uint32_t pid, uint64_t ktime_ns) {
  if (const ProcessInfo* p = find(pid)) return p;
  if (proc_root_.empty()) return nullptr;
  auto p = read_proc_entry(proc_root_ + "/" + std::to_string(pid), pid);
  if (!p || (ktime_ns && p->start_time_ns > ktime_ns)) return nullptr;
  p->parent_exec_id = parent_exec_id_of(p->ppid, pid, ktime_ns);
  auto& slot = by_pid_[pid];
  slot = std::move(*p);
  return &slot;
}

// The entry for the event's process; a missing entry, or one left over from an earlier
// process with the same pid, is replaced by what the event says.
ProcessInfo& ProcessTable::entry_for(const v1::Process& p, const std::string& sandbox_id, uint64_t ktime_ns) {
  auto& e = by_pid_[p.pid()];
  if (e.exec_id != p.exec_id()) {
    e = ProcessInfo{};
    e.exec_id = p.exec_id();
    e.pid = p.pid();
    e.ppid = p.ppid();
    e.start_time_ns = p.start_time_ns();
    e.sandbox_id = sandbox_id;
    // Named by the event (the pipeline knows a launcher the table never saw), else looked
    // up; parent_exec_id_of() only reads by_pid_, so `e` stays valid.
    e.parent_exec_id = !p.parent_exec_id().empty() ? p.parent_exec_id() : parent_exec_id_of(p.ppid(), p.pid(), ktime_ns);
  }
  return e;
}

void ProcessTable::stamp(const ProcessInfo& info, v1::Process* p) const {
  if (p->parent_exec_id().empty()) p->set_parent_exec_id(info.parent_exec_id);
  if (p->binary().empty()) p->set_binary(info.binary);
  if (p->argv().empty()) {
    for (const auto& a : info.argv) p->add_argv(a);
    p->set_argv_truncated(info.argv_truncated);
  }
  if (p->cwd().empty()) p->set_cwd(info.cwd);
  if (p->comm().empty()) p->set_comm(info.comm);
}

void ProcessTable::apply(v1::Event& ev) {
  auto* p = ev.mutable_process();
  switch (ev.kind_case()) {
    case v1::Event::kFork: {
      // The event is about the parent; the record carried the child's identity.
      const ProcessInfo* parent = find_or_read(p->pid(), ev.ktime_ns());
      ProcessInfo child;
      if (parent) {
        child = *parent;
        p->set_exec_id(parent->exec_id);
        p->set_ppid(parent->ppid);
        p->set_start_time_ns(parent->start_time_ns);
        stamp(*parent, p);
      }
      child.pid = ev.fork().child_pid();
      child.ppid = p->pid();
      child.exec_id = ev.fork().child_exec_id();
      child.parent_exec_id = parent ? parent->exec_id : std::string();
      child.sandbox_id = ev.sandbox_id();
      by_pid_[child.pid] = std::move(child);
      return;
    }
    case v1::Event::kExec: {
      if (ev.exec().result() < 0) break;  // failed: the old image runs on
      auto& e = entry_for(*p, ev.sandbox_id(), ev.ktime_ns());
      e.ppid = p->ppid();
      e.uid = p->uid();
      e.gid = p->gid();
      e.binary = p->binary();
      e.argv.assign(p->argv().begin(), p->argv().end());
      e.argv_truncated = p->argv_truncated();
      if (!p->cwd().empty()) e.cwd = p->cwd();
      e.comm = p->comm();
      if (e.parent_exec_id.empty())
        e.parent_exec_id =
            !p->parent_exec_id().empty() ? p->parent_exec_id() : parent_exec_id_of(p->ppid(), p->pid(), ev.ktime_ns());
      stamp(e, p);
      return;
    }
    case v1::Event::kExit: {
      if (auto it = by_pid_.find(p->pid()); it != by_pid_.end() && it->second.exec_id == p->exec_id()) {
        stamp(it->second, p);
        by_pid_.erase(it);
      }
      return;
    }
    case v1::Event::kLoss:
    case v1::Event::KIND_NOT_SET:
      return;
    default:
      break;
  }
  if (p->exec_id().empty()) return;
  stamp(entry_for(*p, ev.sandbox_id(), ev.ktime_ns()), p);
}

}  // namespace agentcage::core
