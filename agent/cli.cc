// SPDX-License-Identifier: Apache-2.0
#include "cli.h"

#include <CLI/CLI.hpp>

namespace agentcage::cli {
namespace {

constexpr const char* kCommandHelp =
    "The command to run and its arguments. Put `--` before it so its own options are not read as "
    "agentcage's.";

bool is_power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

constexpr const char* kDenyPathHelp =
    "Deny opening and executing FILE (absolute; repeatable). Enforced by BPF LSM on the file's inode, so "
    "hard links and bind mounts of it are denied too; without BPF LSM the run refuses to start";
constexpr const char* kDenyExecHelp =
    "Deny executing FILE (absolute; repeatable); reading it stays allowed. Enforced by BPF LSM like --deny-path";

// The deny options, shared by run and trace.
void add_deny_options(CLI::App* cmd, std::vector<std::string>& paths, std::vector<std::string>& execs) {
  cmd->add_option("--deny-path", paths, kDenyPathHelp)->type_name("FILE")->allow_extra_args(false);
  cmd->add_option("--deny-exec", execs, kDenyExecHelp)->type_name("FILE")->allow_extra_args(false);
}

// Empty when every path is absolute, else the usage error.
std::string check_absolute(const char* opt, const std::vector<std::string>& paths) {
  for (const auto& p : paths)
    if (p.empty() || p[0] != '/') return std::string("agentcage: ") + opt + ": '" + p + "' is not an absolute path";
  return {};
}

}  // namespace

Parsed parse(const std::vector<std::string>& args) {
  CLI::App app{
      "agentcage: confine and record AI agents with eBPF, Landlock and seccomp.\n"
      "Runs a command in its own cgroup sandbox; every process it starts is recorded and\n"
      "killed when the run ends.",
      "agentcage"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "Run a command in a fresh sandbox and return its exit status");
  run_cmd->add_option("--profile", run.profile, "Permission profile name or file (see profiles/)");
  run_cmd->add_option("--workspace", run.workspace, "Directory the agent may work in");
  run_cmd->add_option("--socket", run.socket, "agentcaged's control socket")->capture_default_str();
  run_cmd->add_flag("--no-daemon", run.no_daemon, "Run in-process (root only) even when agentcaged is running");
  add_deny_options(run_cmd, run.deny_paths, run.deny_execs);
  run_cmd->add_option("command", run.command, kCommandHelp)->required();
  run_cmd->footer(
      "Exit status: the command's own, or 128+N when it was killed by signal N.\n"
      "SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the command.\n"
      "With agentcaged running, the daemon creates the sandbox (unprivileged users may run);\n"
      "otherwise, as root, the same core runs in-process.\n"
      "Example: agentcage run -- python3 agent.py");

  TraceArgs trace;
  std::string fmt = "json";
  auto* trace_cmd = app.add_subcommand("trace", "Run a command in a sandbox and print its kernel events");
  trace_cmd->add_option("-o,--format", fmt, "Event format: json (one object per line) or text")
      ->check(CLI::IsMember({"json", "text"}));
  trace_cmd->add_option("--output", trace.output, "Write events to FILE instead of standard output ('-')");
  trace_cmd->add_flag("--host", trace.host, "Record every process on the host, not only the sandbox");
  trace_cmd->add_option("--ring-bytes", trace.ring_bytes, "Kernel ring buffer size in bytes (power of two)")
      ->check(CLI::Range(1u << 16, 1u << 30));
  add_deny_options(trace_cmd, trace.deny_paths, trace.deny_execs);
  trace_cmd->add_option("command", trace.command, kCommandHelp);
  trace_cmd->footer(
      "Without a command, --host records the whole host until interrupted.\n"
      "Example: agentcage trace -o text -- sh -c 'echo hi'");

  PsArgs ps;
  std::string ps_fmt = "text";
  auto* ps_cmd = app.add_subcommand("ps", "List sandboxes (yours; every user's for root)");
  ps_cmd->add_option("--socket", ps.socket, "agentcaged's control socket")->capture_default_str();
  ps_cmd->add_flag("--all", ps.all, "Include closed sandboxes the daemon still remembers");
  ps_cmd->add_option("-o,--format", ps_fmt, "json or text")->check(CLI::IsMember({"json", "text"}));

  StatusArgs status;
  std::string status_fmt = "text";
  auto* status_cmd = app.add_subcommand("status", "Daemon status: kernel features, enforcement, counters");
  status_cmd->add_option("--socket", status.socket, "agentcaged's control socket")->capture_default_str();
  status_cmd->add_option("-o,--format", status_fmt, "json or text")->check(CLI::IsMember({"json", "text"}));

  EventsArgs events;
  std::string events_fmt = "json";
  auto* events_cmd = app.add_subcommand("events", "Show events from agentcaged (live with -f)");
  events_cmd->add_option("--socket", events.socket, "agentcaged's control socket")->capture_default_str();
  events_cmd->add_flag("-f,--follow", events.follow, "Stream live events until interrupted");
  events_cmd->add_option("--sandbox", events.sandboxes, "Only this sandbox (repeatable)");
  events_cmd->add_option("--kind", events.kinds, "Only this kind (repeatable)")
      ->check(CLI::IsMember({"exec", "fork", "exit", "file", "net", "syscall", "violation", "loss"}));
  events_cmd->add_flag("--violations", events.violations, "Only violations");
  events_cmd->add_option("--from-seq", events.from_seq, "Start at this store sequence number");
  events_cmd->add_option("--limit", events.limit, "At most this many events");
  events_cmd->add_option("-o,--format", events_fmt, "json or text")->check(CLI::IsMember({"json", "text"}));

  // CLI11 wants argv order reversed for its vector interface.
  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp& e) {
    std::string which = app.get_subcommands().empty() ? app.help() : app.get_subcommands().front()->help();
    return Exit{0, which};
  } catch (const CLI::CallForAllHelp&) {
    return Exit{0, app.help("", CLI::AppFormatMode::All)};
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (dynamic_cast<const CLI::RequiredError*>(&e) && app.get_subcommands().empty())
      msg = "a command is required: run, trace, ps, events or status";
    return Exit{2, "agentcage: " + msg + "\nRun 'agentcage --help' for usage."};
  }

  for (auto [opt, paths] : {std::pair{"--deny-path", &run.deny_paths}, std::pair{"--deny-exec", &run.deny_execs},
                            std::pair{"--deny-path", &trace.deny_paths}, std::pair{"--deny-exec", &trace.deny_execs}})
    if (auto e = check_absolute(opt, *paths); !e.empty()) return Exit{2, e};
  if (*run_cmd) return run;
  auto fmt_of = [](const std::string& f) { return f == "text" ? OutputFormat::text : OutputFormat::json; };
  if (*ps_cmd) {
    ps.format = fmt_of(ps_fmt);
    return ps;
  }
  if (*status_cmd) {
    status.format = fmt_of(status_fmt);
    return status;
  }
  if (*events_cmd) {
    events.format = fmt_of(events_fmt);
    for (const auto& id : events.sandboxes)
      if (id.size() != 16 || id.find_first_not_of("0123456789abcdef") != std::string::npos)
        return Exit{2, "agentcage: --sandbox: '" + id + "' is not a sandbox id (16 hex digits; see agentcage ps)"};
    return events;
  }
  trace.format = fmt == "text" ? OutputFormat::text : OutputFormat::json;
  if (!is_power_of_two(trace.ring_bytes))
    return Exit{2, "agentcage: --ring-bytes: " + std::to_string(trace.ring_bytes) + " is not a power of two"};
  if (trace.command.empty() && !trace.host)
    return Exit{2, "agentcage: trace: a command is required (or --host to record the whole host)\n"
                   "Run 'agentcage trace --help' for usage."};
  return trace;
}

}  // namespace agentcage::cli
