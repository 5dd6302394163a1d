// SPDX-License-Identifier: Apache-2.0
// The incident report on one sandbox (`agentcage audit report`): a model built from the
// sandbox's stored events (pure: no I/O, so unit tests feed it synthetic events) and three
// renderers. Where the events come from (a store file, the daemon's Query RPC) and how
// the records were verified is the caller's business (agent/report_cmd.cc).
//
// Every agent-controlled byte (argv, paths, comm, unix socket names, and the violation
// summaries built from them) is kept as bytes in the model and escaped by each renderer:
// the text view with escape_text (no terminal escape, no forged line), JSON with the
// event writer's escaping (valid JSON, \udcXX for bytes that are not UTF-8), HTML with
// escape_text and then HTML entities (no markup, the same visible escapes as the text).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "agentcage/v1/control.pb.h"
#include "agentcage/v1/report.pb.h"
#include "core/store/process_tree.h"

namespace agentcage::core {

struct ReportContext {
  std::string sandbox_id;
  std::string source;                  // "store FILE", "agentcaged at SOCKET"
  uint64_t generated_ns = 0;           // wall clock, ns since the epoch
  std::optional<v1::Sandbox> sandbox;  // the daemon's record of it, when it still has one
  std::string workspace;               // overrides the record's; empty: the record's, if any
};

class ReportBuilder {
 public:
  explicit ReportBuilder(ReportContext ctx);

  // The sandbox's events, in seq order.
  void add(const v1::Event& ev);
  // A Loss event that names no sandbox, stored while this one ran: part of its record too.
  void add_store_loss(const v1::Event& ev);
  // Wall-clock range of what add() saw (0, 0 before any event): where store-wide losses count.
  uint64_t first_time_ns() const { return first_time_ns_; }
  uint64_t last_time_ns() const { return last_time_ns_; }

  v1::IncidentReport build(const v1::ReportVerification& verification) const;

 private:
  void add_file(const v1::Event& ev, const v1::FileOp& f, const std::string& mechanism);
  void add_net(const v1::Event& ev, const v1::NetOp& n, const v1::Violation* v);
  void add_name(const v1::Event& ev, const v1::DnsQuery& q, const v1::Violation* v);
  void add_loss(const v1::Loss& l, bool store_wide);
  void add_sandbox(const v1::Event& ev);
  void add_timeline(const v1::Event& ev, const char* category, std::string summary);
  bool in_workspace(const std::string& path) const;

  ReportContext ctx_;
  std::string workspace_;  // without a trailing '/'; empty: unknown
  v1::IncidentReport r_;   // header counters, timeline, violations, losses as they come
  ProcessTreeBuilder tree_;
  uint64_t first_time_ns_ = 0, last_time_ns_ = 0;
  // The sandbox's first process is the first to exec in it (the launcher's fork that
  // precedes it belongs to the caller): how it ended is how the run ended.
  std::string first_exec_id_;
  // Grouped sections, keyed for stable order (by path; by destination and process).
  std::map<std::string, v1::ReportFile> read_, written_;
  std::map<std::tuple<std::string, std::string, std::string, uint32_t, std::string, uint32_t, std::string, std::string>,
           v1::ReportConnection>
      conns_;
  std::map<std::pair<std::string, std::string>, v1::ReportName> names_;  // by name, outcome
  std::map<std::pair<std::string, bool>, v1::ReportLoss> losses_;
};

// Text: what a terminal shows. Long sections stop after `max_rows` rows with an
// "... N more" line (0: no cap); JSON and HTML always keep everything.
inline constexpr size_t kReportTextRows = 100;
std::string render_report_text(const v1::IncidentReport& r, size_t max_rows = kReportTextRows);
// One JSON document (and a newline).
std::string render_report_json(const v1::IncidentReport& r);
// One self-contained HTML file: inline CSS, no scripts, no external resources.
std::string render_report_html(const v1::IncidentReport& r);

// Shared by the renderers: "12,40,41" (the pids of a file row).
std::string report_pids(const google::protobuf::RepeatedField<uint32_t>& pids);
// Shared by the renderers: "2024-05-01 12:00:01.123456 UTC".
std::string report_time(uint64_t ns);
// escape_text, then the five HTML-special characters as entities (html_entities).
std::string html_escape(std::string_view s);
std::string html_entities(std::string_view s);  // on text that is escaped already
// "first process (pid N) exited with status S at TIME", ...; no agent bytes.
std::string report_ending_text(const v1::ReportEnding& e);
// "3 events lost: ringbuf_full 3 (kernel, 1 record)"; escaped (escape_text).
std::string report_losses_text(const v1::ReportHeader& h);
// `agentcage tree`'s text view: one line per process, "PID  exit N|running  COMMAND",
// children under their parent with tree rules; escaped (argv is the agent's bytes).
std::vector<std::string> process_tree_lines(const v1::ProcessTreeResponse& t);
// The tree line of one process: its argv (or binary, or [comm]) joined, unescaped.
std::string report_command(const v1::Process& p);

}  // namespace agentcage::core
