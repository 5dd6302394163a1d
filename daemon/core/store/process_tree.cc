// SPDX-License-Identifier: Apache-2.0
#include "core/store/process_tree.h"

#include <sys/wait.h>

#include <algorithm>
#include <functional>
#include <unordered_set>

namespace agentcage::core {

ProcessTreeBuilder::Node& ProcessTreeBuilder::node(const std::string& exec_id, const v1::Process& p) {
  auto [it, fresh] = nodes_.try_emplace(exec_id);
  if (fresh) {
    it->second.order = nodes_.size();
    it->second.process = p;
    it->second.process.set_exec_id(exec_id);
  }
  return it->second;
}

std::string ProcessTreeBuilder::resolve_pid(uint32_t pid) const {
  auto it = live_by_pid_.find(pid);
  return it == live_by_pid_.end() ? std::string() : it->second;
}

void ProcessTreeBuilder::add(const v1::Event& ev) {
  if (ev.has_loss() || !ev.has_process()) return;
  const auto& p = ev.process();
  // The acting process: its exec_id, or (fork events from the daemon carry only the
  // parent's pid) whoever had that pid last.
  std::string id = p.exec_id().empty() ? resolve_pid(p.pid()) : p.exec_id();

  if (ev.has_fork()) {
    const auto& f = ev.fork();
    if (f.child_exec_id().empty()) return;
    v1::Process child_proc;
    if (!id.empty()) {
      auto& parent = node(id, p);
      live_by_pid_[parent.process.pid()] = id;
      child_proc = parent.process;  // runs the parent's image until it execs
    } else {
      child_proc = p;
    }
    child_proc.set_pid(f.child_pid());
    child_proc.set_tid(f.child_pid());
    child_proc.set_ppid(p.pid());
    child_proc.set_parent_exec_id(id);
    child_proc.set_start_time_ns(0);  // unknown from the fork event; an exec fills it
    auto& child = node(f.child_exec_id(), child_proc);
    if (child.parent.empty()) child.parent = id;  // the fork is the best evidence
    live_by_pid_[f.child_pid()] = f.child_exec_id();
    return;
  }

  if (id.empty()) return;
  auto& n = node(id, p);
  if (n.parent.empty()) {
    n.parent = !p.parent_exec_id().empty() ? p.parent_exec_id() : resolve_pid(p.ppid());
    if (n.parent == id) n.parent.clear();
  }
  if (ev.has_exec() && ev.exec().result() >= 0) {
    // The new image replaces the old; what the fork guessed is overwritten.
    std::string parent_id = n.process.parent_exec_id();
    n.process = p;
    n.process.set_exec_id(id);
    if (n.process.parent_exec_id().empty()) n.process.set_parent_exec_id(parent_id.empty() ? n.parent : parent_id);
  }
  if (ev.has_exit()) {
    n.exited = true;
    n.exit_time_ns = ev.time_ns();
    const auto& x = ev.exit();
    n.exit_status = x.signal() ? 128 + x.signal() : x.code();
    if (auto it = live_by_pid_.find(p.pid()); it != live_by_pid_.end() && it->second == id) live_by_pid_.erase(it);
    return;
  }
  live_by_pid_[p.pid()] = id;
}

v1::ProcessTreeResponse ProcessTreeBuilder::build() const {
  std::unordered_map<std::string, std::vector<const std::pair<const std::string, Node>*>> children;
  std::vector<const std::pair<const std::string, Node>*> roots;
  for (const auto& kv : nodes_) {
    const auto& parent = kv.second.parent;
    if (!parent.empty() && parent != kv.first && nodes_.count(parent))
      children[parent].push_back(&kv);
    else
      roots.push_back(&kv);
  }
  // First appearance in seq order is start order for everything recorded here (a fork
  // is stored before anything its child does); start_time_ns would not do, as processes
  // only seen through their fork have none.
  auto by_start = [](const auto* a, const auto* b) { return a->second.order < b->second.order; };
  for (auto& [_, v] : children) std::sort(v.begin(), v.end(), by_start);

  v1::ProcessTreeResponse out;
  std::unordered_set<std::string> placed;
  std::vector<const std::pair<const std::string, Node>*> deferred;  // below the depth cap
  std::function<void(const std::pair<const std::string, Node>*, v1::ProcessNode*, size_t)> fill =
      [&](const auto* kv, v1::ProcessNode* pn, size_t depth) {
        placed.insert(kv->first);
        const Node& n = kv->second;
        *pn->mutable_process() = n.process;
        pn->set_exited(n.exited);
        pn->set_exit_status(n.exit_status);
        pn->set_exit_time_ns(n.exit_time_ns);
        auto it = children.find(kv->first);
        if (it == children.end()) return;
        for (const auto* c : it->second) {
          if (placed.count(c->first)) continue;
          if (depth + 1 >= kMaxTreeDepth) {
            deferred.push_back(c);
            continue;
          }
          fill(c, pn->add_children(), depth + 1);
        }
      };
  std::sort(roots.begin(), roots.end(), by_start);
  for (const auto* r : roots) fill(r, out.add_roots(), 0);
  for (size_t i = 0; i < deferred.size(); ++i)  // fill() may defer more
    if (!placed.count(deferred[i]->first)) fill(deferred[i], out.add_roots(), 0);
  // A parent cycle (only from inconsistent input) leaves nodes unreachable from any root:
  // they are still shown, each cycle broken at its earliest member.
  std::vector<const std::pair<const std::string, Node>*> rest;
  for (const auto& kv : nodes_)
    if (!placed.count(kv.first)) rest.push_back(&kv);
  std::sort(rest.begin(), rest.end(), by_start);
  for (const auto* r : rest)
    if (!placed.count(r->first)) {
      fill(r, out.add_roots(), 0);
      for (size_t i = 0; i < deferred.size(); ++i)
        if (!placed.count(deferred[i]->first)) fill(deferred[i], out.add_roots(), 0);
    }
  return out;
}

v1::ProcessTreeResponse build_process_tree(const std::vector<v1::Event>& events) {
  ProcessTreeBuilder b;
  for (const auto& ev : events) b.add(ev);
  return b.build();
}

}  // namespace agentcage::core
