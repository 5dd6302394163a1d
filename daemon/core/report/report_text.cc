// SPDX-License-Identifier: Apache-2.0
// The report as terminal text. Every string from the model goes through escape_text
// (esc() below), agent-controlled or not: one rule is easier to keep than a list of which
// fields an agent can reach, and a stray escape in a daemon-made string costs nothing.
#include <time.h>

#include <fmt/format.h>

#include "core/base/text.h"
#include "core/report/report.h"

namespace agentcage::core {
namespace {

std::string esc(std::string_view s) { return escape_text(s); }

std::string list(const google::protobuf::RepeatedPtrField<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + esc(s);
  return out;
}

// A section: heading with its row count, rows up to the cap, then how many were left out.
class Section {
 public:
  Section(std::string& out, std::string_view title, size_t rows, size_t max_rows)
      : out_(out), rows_(rows), max_(max_rows) {
    out_ += fmt::format("\n== {} ({}) ==\n", title, rows);
    if (!rows) out_ += "  none\n";
  }
  ~Section() {
    if (max_ && rows_ > max_)
      out_ += fmt::format("  ... {} more (-o json or -o html lists every one)\n", rows_ - max_);
  }
  // False once the cap is reached: the caller stops adding rows.
  bool row(const std::string& line) {
    if (max_ && shown_ >= max_) return false;
    ++shown_;
    out_ += "  " + line + "\n";
    return true;
  }

 private:
  std::string& out_;
  size_t rows_, max_, shown_ = 0;
};

void header_text(std::string& out, const v1::ReportHeader& h) {
  auto field = [&](const char* k, const std::string& v) { out += fmt::format("  {:<12} {}\n", k, v); };
  const char* nr = "not recorded";
  out += fmt::format("\n== Sandbox {} ==\n", esc(h.sandbox_id()));
  field("node:", h.nodes().empty() ? "unknown" : list(h.nodes()));
  field("source:", esc(h.source()));
  field("generated:", report_time(h.generated_ns()));
  std::string owner = h.sandbox_record() ? fmt::format("uid {}", h.owner_uid()) : nr;
  if (h.first_uid_known()) owner += fmt::format(" (first process ran as uid {})", h.first_uid());
  field("owner:", owner);
  field("profile:", h.sandbox_record() ? (h.profile().empty() ? "none" : esc(h.profile())) : nr);
  field("mechanisms:", h.mechanisms().empty() ? "none named by a violation" : list(h.mechanisms()) + " (named by violations)");
  if (!h.profile_digest().empty()) field("profile sha:", h.profile_digest());
  for (const auto& p : h.provenance()) field("in force:", esc(p));
  if (!h.caller_exec_id().empty()) field("client:", "exec_id " + esc(h.caller_exec_id()));
  if (!h.closed().empty()) field("sandbox:", esc(h.closed()));
  field("workspace:", h.workspace().empty() ? std::string(nr) + " (files below are listed with every path)" : esc(h.workspace()));
  if (!h.command().empty()) field("command:", list(h.command(), " "));
  field("first event:", h.events() ? fmt::format("{} (seq {})", report_time(h.first_time_ns()), h.first_seq()) : "none");
  field("last event:", h.events() ? fmt::format("{} (seq {})", report_time(h.last_time_ns()), h.last_seq()) : "none");
  field("events:", std::to_string(h.events()));
  field("ended:", report_ending_text(h.ending()));
  field("losses:", report_losses_text(h));
}

void timeline_text(std::string& out, const v1::IncidentReport& r, size_t max) {
  Section s(out, "Timeline", r.timeline_size(), max);
  for (const auto& t : r.timeline())
    if (!s.row(fmt::format("{}  {:<9} {:>7} {:<15} {}", report_time(t.time_ns()), t.category(), t.pid(), esc(t.comm()),
                           esc(t.summary()))))
      break;
}

void tree_text(std::string& out, const v1::IncidentReport& r, size_t max) {
  auto lines = process_tree_lines(r.process_tree());
  Section s(out, "Process tree", lines.size(), max);
  for (const auto& l : lines)
    if (!s.row(l)) break;
}

std::string file_row(const v1::ReportFile& f) {
  std::string line = fmt::format("{}  [{}] x{}", esc(f.path()), list(f.ops()), f.count());
  if (f.failed()) line += fmt::format(", {} failed ({})", f.failed(), list(f.errors()));
  if (f.violations()) line += fmt::format(", {} violation{} ({})", f.violations(), f.violations() == 1 ? "" : "s", list(f.denied_by()));
  std::string pids = report_pids(f.pids());
  return line + "  pid " + pids;
}

void files_text(std::string& out, const v1::IncidentReport& r, size_t max) {
  bool ws = !r.header().workspace().empty();
  {
    Section s(out, ws ? "Files read outside the workspace" : "Files read", r.files_read_size(), max);
    for (const auto& f : r.files_read())
      if (!s.row(file_row(f))) break;
  }
  {
    Section s(out, ws ? "Files written outside the workspace" : "Files written", r.files_written_size(), max);
    for (const auto& f : r.files_written())
      if (!s.row(file_row(f))) break;
  }
  if (ws)
    out += fmt::format("  (inside the workspace: {} reads, {} writes)\n", r.workspace_reads(), r.workspace_writes());
}

std::string destination(const v1::ReportConnection& c) {
  if (c.family() == "unix") return esc(c.address()) + "/" + esc(c.protocol());
  std::string where = c.family() == "inet6" && c.address().rfind("::ffff:", 0) != 0
                          ? fmt::format("[{}]:{}", esc(c.address()), c.port())
                          : fmt::format("{}:{}", esc(c.address()), c.port());
  if (!c.name().empty()) return fmt::format("{} ({})/{}", esc(c.name()), where, esc(c.protocol()));
  return where + "/" + esc(c.protocol());
}

void network_text(std::string& out, const v1::IncidentReport& r, size_t max) {
  Section s(out, "Network", r.connections_size(), max);
  for (const auto& c : r.connections()) {
    std::string line = fmt::format("{:<8} {} {}  pid {} {}  x{}", c.outcome(), esc(c.op()), destination(c), c.pid(),
                                   esc(c.comm()), c.count());
    if (!c.mechanism().empty()) line += fmt::format("  ({}, {})", esc(c.mechanism()), esc(c.rule()));
    else if (!c.error().empty()) line += "  = " + esc(c.error());
    if (!s.row(line)) break;
  }
}

void names_text(std::string& out, const v1::IncidentReport& r, size_t max) {
  if (r.names().empty()) return;
  Section s(out, "Names", r.names_size(), max);
  for (const auto& n : r.names()) {
    std::string line = fmt::format("{:<8} {}  x{}", esc(n.outcome()), esc(n.name()), n.count());
    line += n.rule().empty() ? std::string("  (no entry)") : fmt::format("  (entry {})", esc(n.rule()));
    if (!n.answers().empty()) line += "  -> " + esc(n.answers(0)) + (n.answers_size() > 1 ? ", ..." : "");
    if (!s.row(line)) break;
  }
}

void violations_text(std::string& out, const v1::IncidentReport& r, size_t max) {
  Section s(out, "Violations", r.violations_size(), max);
  for (const auto& ev : r.violations()) {
    const auto& v = ev.violation();
    if (!s.row(fmt::format("{}  pid {} {}  {} {}  mechanism {}  rule {}", report_time(ev.time_ns()), ev.process().pid(),
                           esc(ev.process().comm()), esc(v.action()), esc(v.what()), esc(v.mechanism()), esc(v.rule()))))
      break;
  }
}

}  // namespace

std::string report_time(uint64_t ns) {
  if (!ns) return "-";
  time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:06} UTC", buf, (ns % 1'000'000'000) / 1000);
}

std::string report_ending_text(const v1::ReportEnding& e) {
  if (e.state() == "exited")
    return fmt::format("first process (pid {}) exited with status {} at {}", e.pid(), e.exit_status(),
                       report_time(e.time_ns()));
  if (e.state() == "running")
    return fmt::format("first process (pid {}) still running, or its exit was not recorded", e.pid());
  return "unknown: no process recorded";
}

std::string report_losses_text(const v1::ReportHeader& h) {
  if (h.losses().empty()) return "none recorded";
  std::string out = fmt::format("{} events lost:", h.lost_events());
  const char* sep = " ";
  for (const auto& l : h.losses()) {
    out += fmt::format("{}{} {} ({}{} record{}{})", sep, esc(l.reason()),
                       l.count() ? std::to_string(l.count()) : "count unknown",
                       l.where().empty() ? "" : esc(l.where()) + ", ", l.records(), l.records() == 1 ? "" : "s",
                       l.store_wide() ? ", store-wide" : "");
    sep = "; ";
  }
  return out;
}

std::string report_command(const v1::Process& p) {
  std::string cmd;
  for (const auto& a : p.argv()) cmd += (cmd.empty() ? "" : " ") + a;
  if (p.argv_truncated()) cmd += " ...";
  if (cmd.empty()) cmd = !p.binary().empty() ? p.binary() : "[" + p.comm() + "]";
  return cmd;
}

namespace {

void tree_lines(const v1::ProcessNode& n, const std::string& prefix, const std::string& branch,
                std::vector<std::string>& out) {
  std::string state = n.exited() ? "exit " + std::to_string(n.exit_status()) : "running";
  out.push_back(fmt::format("{}{}{}  {}  {}", prefix, branch, n.process().pid(), state, esc(report_command(n.process()))));
  std::string child_prefix = prefix + (branch.empty() ? "" : branch == "`- " ? "   " : "|  ");
  for (int i = 0; i < n.children_size(); ++i)
    tree_lines(n.children(i), child_prefix, i + 1 == n.children_size() ? "`- " : "|- ", out);
}

}  // namespace

std::vector<std::string> process_tree_lines(const v1::ProcessTreeResponse& t) {
  std::vector<std::string> out;
  for (const auto& r : t.roots()) tree_lines(r, "", "", out);
  return out;
}

std::string render_report_text(const v1::IncidentReport& r, size_t max_rows) {
  std::string out = "agentcage incident report (times in UTC)\n";
  header_text(out, r.header());
  timeline_text(out, r, max_rows);
  tree_text(out, r, max_rows);
  files_text(out, r, max_rows);
  network_text(out, r, max_rows);
  names_text(out, r, max_rows);
  violations_text(out, r, max_rows);
  out += "\n== Verification ==\n  " + esc(r.verification().detail()) + "\n";
  return out;
}

}  // namespace agentcage::core
