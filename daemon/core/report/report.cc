// SPDX-License-Identifier: Apache-2.0
// The report model: events in, one v1::IncidentReport out.
#include "core/report/report.h"

#include <fcntl.h>

#include <algorithm>
#include <fmt/format.h>
#include <set>

#include "core/events/decoder.h"
#include "core/events/event_json.h"

namespace agentcage::core {
namespace {

// Adds v to a repeated field unless it is there already (small sets: ops, errors, pids).
template <class R, class T>
void add_unique(R* field, const T& v) {
  if (std::find(field->begin(), field->end(), v) == field->end()) field->Add(T(v));
}

std::string joined(const google::protobuf::RepeatedPtrField<std::string>& parts) {
  std::string out;
  for (const auto& a : parts) out += (out.empty() ? "" : " ") + a;
  return out;
}

// What a file action does to the file: an open without write access, O_CREAT or O_TRUNC
// reads it (as does an exec an LSM rule stopped); every other recorded action changes the
// file system (creat, unlink, rename, mkdir, chmod, ...).
bool is_write(const v1::FileOp& f) {
  if (f.op() == "exec") return false;
  if (f.op() != "open") return true;
  return (f.flags() & O_ACCMODE) != O_RDONLY || (f.flags() & (O_CREAT | O_TRUNC)) != 0;
}

std::string op_label(const v1::FileOp& f) {
  if (f.op() != "open" || !is_write(f)) return f.op();
  return (f.flags() & O_CREAT) ? "open(create)" : "open(write)";
}

// The absolute path an action named: a relative path the process passed is joined to its
// cwd (lexically; the kernel resolved successful opens already).
std::string absolute(const std::string& path, const v1::Process& p) {
  if (path.empty() || path[0] == '/' || p.cwd().empty()) return path;
  return p.cwd() + (p.cwd().back() == '/' ? "" : "/") + path;
}

std::string exec_summary(const v1::Event& ev) {
  const auto& x = ev.exec();
  if (x.result() < 0) {
    std::string tried = joined(x.argv());
    return fmt::format("exec failed ({}): {}{}{}", x.error(), x.filename(), tried.empty() ? "" : ": ", tried);
  }
  std::string cmd = joined(ev.process().argv());
  if (ev.process().argv_truncated()) cmd += " ...";
  return "exec " + (cmd.empty() ? x.filename() : cmd);
}

std::string violation_summary(const v1::Violation& v) {
  return fmt::format("{} {} ({}, {})", v.action(), v.what(), v.mechanism(), v.rule());
}

// Outcome of a network action the cgroup programs let through (a violation says
// otherwise): the syscall's own result decides between allowed and failed.
std::string net_outcome(const v1::NetOp& n, const v1::Violation* v) {
  if (v) return v->action() == "kill" ? "killed" : v->action() == "audit" ? "audit" : "denied";
  if (n.result() >= 0 || n.error() == "EINPROGRESS") return "allowed";
  return n.error() == "EPERM" || n.error() == "EACCES" ? "denied" : "failed";
}

// The node of the process with this exec_id, depth first; null if absent.
const v1::ProcessNode* find_in(const v1::ProcessNode& n, const std::string& exec_id) {
  if (n.process().exec_id() == exec_id) return &n;
  for (const auto& c : n.children())
    if (const auto* f = find_in(c, exec_id)) return f;
  return nullptr;
}

const v1::ProcessNode* find_node(const v1::ProcessTreeResponse& t, const std::string& exec_id) {
  if (exec_id.empty()) return nullptr;
  for (const auto& r : t.roots())
    if (const auto* f = find_in(r, exec_id)) return f;
  return nullptr;
}

}  // namespace

ReportBuilder::ReportBuilder(ReportContext ctx) : ctx_(std::move(ctx)) {
  workspace_ = ctx_.workspace;
  if (workspace_.empty() && ctx_.sandbox) workspace_ = ctx_.sandbox->workspace();
  while (workspace_.size() > 1 && workspace_.back() == '/') workspace_.pop_back();
}

bool ReportBuilder::in_workspace(const std::string& path) const {
  if (workspace_.empty() || path.empty() || path[0] != '/') return false;
  if (workspace_ == "/") return true;
  return path.compare(0, workspace_.size(), workspace_) == 0 &&
         (path.size() == workspace_.size() || path[workspace_.size()] == '/');
}

void ReportBuilder::add_timeline(const v1::Event& ev, const char* category, std::string summary) {
  auto* t = r_.add_timeline();
  t->set_category(category);
  t->set_seq(ev.seq());
  t->set_time_ns(ev.time_ns());
  t->set_pid(ev.process().pid());
  t->set_comm(ev.process().comm());
  t->set_summary(std::move(summary));
}

void ReportBuilder::add(const v1::Event& ev) {
  auto* h = r_.mutable_header();
  h->set_events(h->events() + 1);
  if (!h->first_seq() || ev.seq() < h->first_seq()) h->set_first_seq(ev.seq());
  h->set_last_seq(std::max(h->last_seq(), ev.seq()));
  if (ev.time_ns() && (!first_time_ns_ || ev.time_ns() < first_time_ns_)) first_time_ns_ = ev.time_ns();
  last_time_ns_ = std::max(last_time_ns_, ev.time_ns());
  if (!ev.node().empty()) add_unique(h->mutable_nodes(), ev.node());
  tree_.add(ev);
  switch (ev.kind_case()) {
    case v1::Event::kExec:
      if (first_exec_id_.empty() && ev.exec().result() >= 0) first_exec_id_ = ev.process().exec_id();
      add_timeline(ev, "exec", exec_summary(ev));
      break;
    case v1::Event::kFile: add_file(ev, ev.file(), ""); break;
    case v1::Event::kNet:
      add_net(ev, ev.net(), nullptr);
      add_timeline(ev, "network", net_what(ev.net()) + (ev.net().result() < 0 ? " = " + ev.net().error() : ""));
      break;
    case v1::Event::kViolation: {
      const auto& v = ev.violation();
      *r_.add_violations() = ev;
      if (!v.mechanism().empty()) add_unique(h->mutable_mechanisms(), v.mechanism());
      add_timeline(ev, "violation", violation_summary(v));
      if (v.has_file()) add_file(ev, v.file(), v.mechanism());
      if (v.has_net()) add_net(ev, v.net(), &v);
      if (v.has_dns()) add_name(ev, v.dns(), &v);
      break;
    }
    case v1::Event::kDns: add_name(ev, ev.dns(), nullptr); break;
    case v1::Event::kLoss: add_loss(ev.loss(), false); break;
    case v1::Event::kSandbox: add_sandbox(ev); break;
    default: break;
  }
}

// The sandbox's record in the store: who, which profile, what was in force, how it ended.
// It comes first (written at create), so the workspace is known for every file after it.
void ReportBuilder::add_sandbox(const v1::Event& ev) {
  const auto& c = ev.sandbox();
  auto* h = r_.mutable_header();
  if (!ctx_.sandbox) ctx_.sandbox = c.sandbox();
  if (workspace_.empty()) {
    workspace_ = c.sandbox().workspace();
    while (workspace_.size() > 1 && workspace_.back() == '/') workspace_.pop_back();
  }
  if (h->provenance().empty())
    for (const auto& p : c.provenance()) h->add_provenance(p);
  if (h->profile_digest().empty()) h->set_profile_digest(c.profile_digest());
  if (h->caller_exec_id().empty()) h->set_caller_exec_id(ev.process().exec_id());
  if (c.phase() == "closed" || c.phase() == "killed")
    h->set_closed(fmt::format("{} at {}{}{}", c.phase(), report_time(c.ended_ns()),
                              c.reason().empty() ? "" : ": " + c.reason(),
                              c.exit_known() ? fmt::format("; exit status {}", c.exit_status()) : ""));
}

void ReportBuilder::add_store_loss(const v1::Event& ev) {
  if (ev.has_loss()) add_loss(ev.loss(), true);
}

void ReportBuilder::add_loss(const v1::Loss& l, bool store_wide) {
  auto& e = losses_[{l.reason() + '\0' + l.where(), store_wide}];
  e.set_reason(l.reason());
  e.set_where(l.where());
  e.set_store_wide(store_wide);
  e.set_count(e.count() + l.count());
  e.set_records(e.records() + 1);
}

// A file action (or the file attempt of a violation, `mechanism` set): counted inside the
// workspace, grouped by path outside it; a write outside it is also a timeline entry.
void ReportBuilder::add_file(const v1::Event& ev, const v1::FileOp& f, const std::string& mechanism) {
  bool write = is_write(f);
  const uint64_t n = 1 + f.repeats();  // a folded failure stands for its repeats too
  std::vector<std::pair<std::string, std::string>> targets{{absolute(f.path(), ev.process()), op_label(f)}};
  // rename/link/symlink change a second name too.
  if (!f.path2().empty()) targets.push_back({absolute(f.path2(), ev.process()), f.op() + "(to)"});
  for (const auto& [path, op] : targets) {
    if (in_workspace(path)) {
      if (write)
        r_.set_workspace_writes(r_.workspace_writes() + n);
      else
        r_.set_workspace_reads(r_.workspace_reads() + n);
      continue;
    }
    auto& e = (write ? written_ : read_)[path];
    if (e.path().empty()) {
      e.set_path(path);
      e.set_first_seq(ev.seq());
    }
    add_unique(e.mutable_ops(), op);
    add_unique(e.mutable_pids(), ev.process().pid());
    if (!mechanism.empty()) {
      // The violation repeats an action the file event (if any) already counted.
      e.set_violations(e.violations() + n);
      add_unique(e.mutable_denied_by(), mechanism);
      continue;
    }
    e.set_count(e.count() + n);
    if (f.result() < 0) {
      e.set_failed(e.failed() + n);
      if (!f.error().empty()) add_unique(e.mutable_errors(), f.error());
    }
  }
  if (write && mechanism.empty() && !in_workspace(targets[0].first)) {
    std::string line = fmt::format("{} {}", op_label(f), targets[0].first);
    if (targets.size() > 1) line += " -> " + targets[1].first;
    if (f.result() < 0) line += " = " + f.error();
    add_timeline(ev, "write", std::move(line));
  }
}

void ReportBuilder::add_net(const v1::Event& ev, const v1::NetOp& n, const v1::Violation* v) {
  const auto& a = n.has_remote() ? n.remote() : n.local();
  std::string outcome = net_outcome(n, v);
  auto key = std::make_tuple(n.op() + '\0' + n.protocol(), a.family() + '\0' + a.address(), outcome, a.port(),
                             v ? v->rule() : n.error(), ev.process().pid(), ev.process().comm(), n.name());
  auto& c = conns_[key];
  if (!c.count()) {
    c.set_op(n.op());
    c.set_protocol(n.protocol());
    c.set_family(a.family());
    c.set_address(a.v4_mapped() ? "::ffff:" + a.address() : a.address());
    c.set_port(a.port());
    c.set_outcome(outcome);
    c.set_error(n.error());
    if (v) {
      c.set_mechanism(v->mechanism());
      c.set_rule(v->rule());
    }
    c.set_pid(ev.process().pid());
    c.set_comm(ev.process().comm());
    c.set_first_seq(ev.seq());
    c.set_name(n.name());
  }
  c.set_count(c.count() + 1);
}

void ReportBuilder::add_name(const v1::Event& ev, const v1::DnsQuery& q, const v1::Violation* v) {
  std::string outcome;
  if (v && v->action() == "kill") outcome = "killed";
  else if (v && v->action() == "audit") outcome = "audit";
  else if (v) outcome = "refused";
  else if (q.rcode() == "NOERROR") outcome = "resolved";
  else for (char ch : q.rcode()) outcome += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  auto& n = names_[{q.name(), outcome}];
  if (!n.count()) {
    n.set_name(q.name());
    n.set_outcome(outcome);
    n.set_rule(q.rule());
    for (const auto& a : q.answers()) n.add_answers(a);
    n.set_first_seq(ev.seq());
  }
  n.set_count(n.count() + 1);
}

v1::IncidentReport ReportBuilder::build(const v1::ReportVerification& verification) const {
  v1::IncidentReport r = r_;
  auto* h = r.mutable_header();
  h->set_sandbox_id(ctx_.sandbox_id);
  h->set_source(ctx_.source);
  h->set_generated_ns(ctx_.generated_ns);
  h->set_first_time_ns(first_time_ns_);
  h->set_last_time_ns(last_time_ns_);
  if (ctx_.sandbox) {
    h->set_sandbox_record(true);
    h->set_owner_uid(ctx_.sandbox->owner_uid());
    h->set_profile(ctx_.sandbox->profile());
    for (const auto& a : ctx_.sandbox->argv()) h->add_command(a);
  }
  h->set_workspace(workspace_);
  *r.mutable_process_tree() = tree_.build();
  auto* end = h->mutable_ending();
  const v1::ProcessNode* first = find_node(r.process_tree(), first_exec_id_);
  if (!first && r.process_tree().roots_size()) first = &r.process_tree().roots(0);
  if (!first) {
    end->set_state("unknown");
  } else {
    h->set_first_uid_known(true);
    h->set_first_uid(first->process().uid());
    end->set_pid(first->process().pid());
    end->set_state(first->exited() ? "exited" : "running");
    end->set_exit_status(first->exit_status());
    end->set_time_ns(first->exit_time_ns());
  }
  for (const auto& [_, l] : losses_) {
    *h->add_losses() = l;
    h->set_lost_events(h->lost_events() + l.count());
  }
  // The timeline is in time order; events of one sandbox are stored in time order already,
  // except across the store writer's batches, so sort (stably, seq breaking ties).
  std::stable_sort(r.mutable_timeline()->begin(), r.mutable_timeline()->end(), [](const auto& a, const auto& b) {
    return a.time_ns() != b.time_ns() ? a.time_ns() < b.time_ns() : a.seq() < b.seq();
  });
  for (const auto& [_, f] : read_) *r.add_files_read() = f;
  for (const auto& [_, f] : written_) *r.add_files_written() = f;
  for (const auto& [_, c] : conns_) *r.add_connections() = c;
  for (const auto& [_, n] : names_) *r.add_names() = n;
  *r.mutable_verification() = verification;
  return r;
}

std::string render_report_json(const v1::IncidentReport& r) { return message_json(r) + "\n"; }

std::string report_pids(const google::protobuf::RepeatedField<uint32_t>& pids) {
  std::string out;
  for (auto p : pids) {
    // Two appends: GCC 12's -Wrestrict misfires on `"," + std::to_string(p)` at -O2.
    if (!out.empty()) out += ',';
    out += std::to_string(p);
  }
  return out;
}

}  // namespace agentcage::core
