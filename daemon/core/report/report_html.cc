// SPDX-License-Identifier: Apache-2.0
// The report as one self-contained HTML file: inline CSS, no script, nothing fetched
// (a Content-Security-Policy of default-src 'none' says so to the browser as well, so
// even a bug in the escaping below could not run or load anything). Every string from
// the model goes through html_escape (h() below): escape_text first, so bytes that are
// not UTF-8 and control characters read as in the text view, then the HTML specials.
#include <fmt/format.h>

#include "core/base/text.h"
#include "core/report/report.h"

namespace agentcage::core {
namespace {

std::string h(std::string_view s) { return html_escape(s); }

std::string hlist(const google::protobuf::RepeatedPtrField<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + h(s);
  return out;
}

constexpr const char* kStyle = R"css(
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111;background:#fff}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td{font-family:ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
table.kv th{width:12em}tr.violation td,.denied,.killed,.broken{color:#a00;font-weight:bold}
.allowed,.ok{color:#060}.audit{color:#a60}ul.tree{font-family:ui-monospace,monospace;list-style:none}
ul.tree ul{list-style:none;border-left:1px dotted #999;padding-left:1.5em}p.none{color:#666}
)css";

// A section: heading, then rows in a table (already escaped cells), or "none".
void table(std::string& out, const char* id, const std::string& title, const std::vector<std::string>& heads,
           const std::vector<std::pair<std::string, std::vector<std::string>>>& rows) {
  out += fmt::format("<section id=\"{}\"><h2>{} ({})</h2>\n", id, title, rows.size());
  if (rows.empty()) {
    out += "<p class=\"none\">none</p></section>\n";
    return;
  }
  out += "<table><tr>";
  for (const auto& hd : heads) out += "<th>" + hd + "</th>";
  out += "</tr>\n";
  for (const auto& [cls, cells] : rows) {
    out += cls.empty() ? "<tr>" : "<tr class=\"" + cls + "\">";
    for (const auto& c : cells) out += "<td>" + c + "</td>";
    out += "</tr>\n";
  }
  out += "</table></section>\n";
}

void header_html(std::string& out, const v1::ReportHeader& hd) {
  const std::string nr = "not recorded";
  std::string owner = hd.sandbox_record() ? fmt::format("uid {}", hd.owner_uid()) : nr;
  if (hd.first_uid_known()) owner += fmt::format(" (first process ran as uid {})", hd.first_uid());
  std::vector<std::pair<std::string, std::string>> kv{
      {"Sandbox", h(hd.sandbox_id())},
      {"Node", hd.nodes().empty() ? "unknown" : hlist(hd.nodes())},
      {"Source", h(hd.source())},
      {"Generated", report_time(hd.generated_ns())},
      {"Owner", owner},
      {"Profile", hd.sandbox_record() ? (hd.profile().empty() ? "none" : h(hd.profile())) : nr},
      {"Mechanisms", hd.mechanisms().empty() ? "none named by a violation" : hlist(hd.mechanisms()) + " (named by violations)"},
      {"Profile SHA-256", hd.profile_digest().empty() ? nr : h(hd.profile_digest())},
      {"In force", hd.provenance().empty() ? nr : hlist(hd.provenance(), "<br>")},
      {"Client", hd.caller_exec_id().empty() ? nr : "exec_id " + h(hd.caller_exec_id())},
      {"Sandbox end", hd.closed().empty() ? nr : h(hd.closed())},
      {"Workspace", hd.workspace().empty() ? nr + " (files are listed with every path)" : h(hd.workspace())},
      {"Command", hd.command().empty() ? nr : hlist(hd.command(), " ")},
      {"First event", fmt::format("{} (seq {})", report_time(hd.first_time_ns()), hd.first_seq())},
      {"Last event", fmt::format("{} (seq {})", report_time(hd.last_time_ns()), hd.last_seq())},
      {"Events", std::to_string(hd.events())},
      {"Ended", html_entities(report_ending_text(hd.ending()))},
      {"Losses", html_entities(report_losses_text(hd))},
  };
  out += "<section id=\"sandbox\"><h2>Sandbox</h2><table class=\"kv\">\n";
  for (const auto& [k, v] : kv) out += "<tr><th>" + k + "</th><td>" + v + "</td></tr>\n";
  out += "</table></section>\n";
}

void tree_html(std::string& out, const v1::ProcessNode& n) {
  std::string state = n.exited() ? "exit " + std::to_string(n.exit_status()) : "running";
  out += fmt::format("<li>{}  {}  {}", n.process().pid(), state, h(report_command(n.process())));
  if (n.children_size()) {
    out += "<ul>";
    for (const auto& c : n.children()) tree_html(out, c);
    out += "</ul>";
  }
  out += "</li>\n";
}

std::vector<std::pair<std::string, std::vector<std::string>>> file_rows(
    const google::protobuf::RepeatedPtrField<v1::ReportFile>& files) {
  std::vector<std::pair<std::string, std::vector<std::string>>> rows;
  for (const auto& f : files) {
    std::string pids = report_pids(f.pids());
    std::string viol = f.violations() ? fmt::format("{} ({})", f.violations(), hlist(f.denied_by())) : "";
    rows.push_back({f.violations() ? "violation" : "",
                    {h(f.path()), hlist(f.ops()), std::to_string(f.count()),
                     f.failed() ? fmt::format("{} ({})", f.failed(), hlist(f.errors())) : "", viol, pids}});
  }
  return rows;
}

void sections_html(std::string& out, const v1::IncidentReport& r) {
  std::vector<std::pair<std::string, std::vector<std::string>>> rows;
  for (const auto& t : r.timeline())
    rows.push_back({t.category() == "violation" ? "violation" : "",
                    {report_time(t.time_ns()), h(t.category()), std::to_string(t.pid()), h(t.comm()), h(t.summary())}});
  table(out, "timeline", "Timeline", {"Time", "What", "PID", "Comm", "Summary"}, rows);

  out += fmt::format("<section id=\"process-tree\"><h2>Process tree</h2>\n");
  if (r.process_tree().roots().empty()) out += "<p class=\"none\">none</p>";
  out += "<ul class=\"tree\">\n";
  for (const auto& n : r.process_tree().roots()) tree_html(out, n);
  out += "</ul></section>\n";

  bool ws = !r.header().workspace().empty();
  std::vector<std::string> fh{"Path", "Actions", "Count", "Failed", "Violations", "PIDs"};
  table(out, "files-read", ws ? "Files read outside the workspace" : "Files read", fh, file_rows(r.files_read()));
  table(out, "files-written", ws ? "Files written outside the workspace" : "Files written", fh, file_rows(r.files_written()));
  if (ws)
    out += fmt::format("<p>Inside the workspace: {} reads, {} writes.</p>\n", r.workspace_reads(), r.workspace_writes());

  rows.clear();
  for (const auto& c : r.connections()) {
    std::string dest = c.family() == "unix" ? h(c.address()) : fmt::format("{}:{}", h(c.address()), c.port());
    if (!c.name().empty()) dest = h(c.name()) + " (" + dest + ")";
    rows.push_back({"", {"<span class=\"" + h(c.outcome()) + "\">" + h(c.outcome()) + "</span>", h(c.op()), dest,
                         h(c.protocol()), fmt::format("{} {}", c.pid(), h(c.comm())), std::to_string(c.count()),
                         c.mechanism().empty() ? h(c.error()) : h(c.mechanism()) + ": " + h(c.rule())}});
  }
  table(out, "network", "Network", {"Outcome", "Op", "Address", "Protocol", "Process", "Count", "Why"}, rows);

  rows.clear();
  for (const auto& n : r.names()) {
    std::string answers;
    for (const auto& a : n.answers()) answers += (answers.empty() ? "" : ", ") + h(a);
    rows.push_back({"", {"<span class=\"" + h(n.outcome()) + "\">" + h(n.outcome()) + "</span>", h(n.name()),
                         n.rule().empty() ? std::string("(no entry)") : h(n.rule()), answers,
                         std::to_string(n.count())}});
  }
  if (!rows.empty()) table(out, "names", "Names (DNS)", {"Outcome", "Name", "Entry", "Answer", "Count"}, rows);

  rows.clear();
  for (const auto& ev : r.violations()) {
    const auto& v = ev.violation();
    rows.push_back({"violation", {report_time(ev.time_ns()), fmt::format("{} {}", ev.process().pid(), h(ev.process().comm())),
                                  h(v.action()), h(v.what()), h(v.mechanism()), h(v.rule())}});
  }
  table(out, "violations", "Violations", {"Time", "Process", "Action", "What", "Mechanism", "Rule"}, rows);
}

}  // namespace

std::string html_escape(std::string_view s) { return html_entities(escape_text(s)); }

std::string html_entities(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_report_html(const v1::IncidentReport& r) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n";
  out += "<title>agentcage incident report: sandbox " + h(r.header().sandbox_id()) + "</title>\n";
  out += std::string("<style>") + kStyle + "</style></head><body>\n";
  out += "<h1>agentcage incident report</h1>\n<p>Times in UTC.</p>\n";
  header_html(out, r.header());
  sections_html(out, r);
  const auto& v = r.verification();
  out += "<section id=\"verification\"><h2>Verification</h2>\n<p class=\"" + h(v.state()) + "\">" + h(v.detail()) +
         "</p></section>\n</body></html>\n";
  return out;
}

}  // namespace agentcage::core
