// SPDX-License-Identifier: Apache-2.0
#include "cli.h"

#include <CLI/CLI.hpp>

namespace agentcage::cli {
namespace {

constexpr const char* kCommandHelp =
    "The command to run and its arguments. Put `--` before it so its own options are not read as "
    "agentcage's.";

bool is_power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

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
  run_cmd->add_option("command", run.command, kCommandHelp)->required();
  run_cmd->footer(
      "Exit status: the command's own, or 128+N when it was killed by signal N.\n"
      "SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the command.\n"
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
  trace_cmd->add_option("command", trace.command, kCommandHelp);
  trace_cmd->footer(
      "Without a command, --host records the whole host until interrupted.\n"
      "Example: agentcage trace -o text -- sh -c 'echo hi'");

  ProfileLintArgs lint;
  ProfileShowArgs show;
  auto* profile_cmd = app.add_subcommand("profile", "Check and inspect permission profiles");
  profile_cmd->require_subcommand(1);
  auto* lint_cmd = profile_cmd->add_subcommand("lint", "Validate profile files; exit 1 if any has an error");
  lint_cmd->add_option("files", lint.files, "Profile YAML files")->required();
  lint_cmd->add_option("--workspace", lint.workspace, "Value of ${WORKSPACE} (default: the placeholder /WORKSPACE)");
  lint_cmd->footer(
      "Prints 'FILE: ok' per valid file; errors and warnings go to standard error as FILE:LINE:COL: message.\n"
      "Example: agentcage profile lint profiles/*.yaml");
  auto* show_cmd = profile_cmd->add_subcommand("show", "Print a profile fully resolved (extends applied, variables expanded)");
  show_cmd->add_option("name", show.name, "Profile name (on the search path) or path to a .yaml file")->required();
  show_cmd->add_option("--workspace", show.workspace, "Value of ${WORKSPACE} (default: the current directory)");
  show_cmd->footer(
      "Names are looked up in $AGENTCAGE_PROFILE_PATH, /etc/agentcage/profiles and the shipped profiles.\n"
      "Example: agentcage profile show coding-agent --workspace ~/src/app");

  // CLI11 wants argv order reversed for its vector interface.
  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp& e) {
    // The innermost subcommand given ("profile lint --help" shows lint's help).
    const CLI::App* which = &app;
    while (!which->get_subcommands().empty()) which = which->get_subcommands().front();
    return Exit{0, which->help()};
  } catch (const CLI::CallForAllHelp&) {
    return Exit{0, app.help("", CLI::AppFormatMode::All)};
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (dynamic_cast<const CLI::RequiredError*>(&e) && app.get_subcommands().empty())
      msg = "a command is required: run, trace or profile";
    else if (dynamic_cast<const CLI::RequiredError*>(&e) && *profile_cmd && profile_cmd->get_subcommands().empty())
      msg = "profile: a subcommand is required: lint or show";
    return Exit{2, "agentcage: " + msg + "\nRun 'agentcage --help' for usage."};
  }

  if (*run_cmd) return run;
  if (*lint_cmd) return lint;
  if (*show_cmd) return show;
  trace.format = fmt == "text" ? OutputFormat::text : OutputFormat::json;
  if (!is_power_of_two(trace.ring_bytes))
    return Exit{2, "agentcage: --ring-bytes: " + std::to_string(trace.ring_bytes) + " is not a power of two"};
  if (trace.command.empty() && !trace.host)
    return Exit{2, "agentcage: trace: a command is required (or --host to record the whole host)\n"
                   "Run 'agentcage trace --help' for usage."};
  return trace;
}

}  // namespace agentcage::cli
