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

  auto* audit_cmd = app.add_subcommand("audit", "Check and ship the tamper-evident audit store");
  audit_cmd->require_subcommand(1);
  AuditVerifyArgs verify;
  auto* verify_cmd = audit_cmd->add_subcommand("verify", "Check the store's hash chain: OK, or the first broken link");
  verify_cmd->add_option("--db", verify.db, "Store file")->capture_default_str();
  verify_cmd->footer(
      "Prints 'OK: N events, chain intact' (exit 0) or 'BROKEN at seq N: what' (exit 1):\n"
      "edited rows, deleted rows (gaps, or missing at the end) and reordered rows are named.\n"
      "Exit 2 when the store cannot be read.");

  AuditPushArgs push;
  auto* push_cmd = audit_cmd->add_subcommand("push", "Ship a store's events to an audit collector (AuditSink.Push)");
  push_cmd->add_option("--db", push.db, "Store file to ship from")->capture_default_str();
  push_cmd->add_option("--endpoint", push.endpoint, "Collector HOST:PORT")->required();
  push_cmd->add_flag("--insecure", push.insecure, "Plaintext, no TLS (only on a trusted network)");
  push_cmd->add_option("--ca", push.ca, "PEM CA certificates for the collector (default: system roots)");
  push_cmd->add_option("--cert", push.cert, "PEM client certificate for mTLS");
  push_cmd->add_option("--key", push.key, "PEM client key for mTLS");
  push_cmd->add_option("--server-name", push.server_name, "Name expected in the collector's certificate");
  push_cmd->add_flag("--all", push.all, "Ship every event, not only violations and losses");
  push_cmd->add_flag("--once", push.once, "Exit once everything in the store is acknowledged");
  push_cmd->add_option("--node", push.node, "Node name to send (default: this host's name)");
  push_cmd->add_option("--batch", push.batch, "Most events per batch")->check(CLI::Range(1, 10000));
  push_cmd->add_option("--timeout", push.timeout_s, "With --once: give up after this many seconds")
      ->check(CLI::Range(1, 86400));
  push_cmd->footer(
      "Resumes where the collector stands (it is asked first), retries with backoff through\n"
      "outages, and advances only on acknowledgement. Without --once it runs until SIGINT/SIGTERM.\n"
      "Example: agentcage audit push --db audit.db --endpoint collector:7443 --ca ca.pem --once");

  CollectorArgs coll;
  auto* coll_cmd = app.add_subcommand("collector", "Run the reference audit collector (AuditSink service)");
  coll_cmd->add_option("--listen", coll.listen, "ADDR:PORT to serve on (port 0: pick a free port)")->required();
  coll_cmd->add_option("--db", coll.db, "Collector store file")->capture_default_str();
  coll_cmd->add_flag("--insecure", coll.insecure, "Accept plaintext, no TLS (only on a trusted network)");
  coll_cmd->add_option("--tls-cert", coll.tls_cert, "PEM server certificate chain");
  coll_cmd->add_option("--tls-key", coll.tls_key, "PEM server key");
  coll_cmd->add_option("--tls-client-ca", coll.tls_client_ca,
                       "PEM CA: require client certificates signed by it (mTLS); a node may then only push "
                       "under a name (CN or SAN) of its certificate");
  coll_cmd->footer(
      "Stores events from many nodes once each (dedup by node, store and seq) in its own\n"
      "hash-chained store; prints 'listening on ADDR:PORT' and runs until SIGINT/SIGTERM.");

  // CLI11 wants argv order reversed for its vector interface.
  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp& e) {
    // The deepest command given ("audit push --help" is push's help, not audit's).
    CLI::App* sub = &app;
    while (!sub->get_subcommands().empty()) sub = sub->get_subcommands().front();
    return Exit{0, sub->help()};
  } catch (const CLI::CallForAllHelp&) {
    return Exit{0, app.help("", CLI::AppFormatMode::All)};
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    if (dynamic_cast<const CLI::RequiredError*>(&e) && app.get_subcommands().empty())
      msg = "a command is required: run, trace, audit or collector";
    return Exit{2, "agentcage: " + msg + "\nRun 'agentcage --help' for usage."};
  }

  if (*run_cmd) return run;
  if (*verify_cmd) return verify;
  if (*push_cmd) {
    if (push.insecure && !(push.ca.empty() && push.cert.empty() && push.key.empty()))
      return Exit{2, "agentcage: audit push: --insecure excludes --ca, --cert and --key"};
    if (push.cert.empty() != push.key.empty())
      return Exit{2, "agentcage: audit push: --cert and --key go together (mTLS)"};
    return push;
  }
  if (*coll_cmd) {
    if (coll.insecure && !(coll.tls_cert.empty() && coll.tls_key.empty() && coll.tls_client_ca.empty()))
      return Exit{2, "agentcage: collector: --insecure excludes --tls-cert, --tls-key and --tls-client-ca"};
    if (!coll.insecure && (coll.tls_cert.empty() || coll.tls_key.empty()))
      return Exit{2, "agentcage: collector: TLS needs --tls-cert and --tls-key (or --insecure for plaintext)"};
    return coll;
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
