// SPDX-License-Identifier: Apache-2.0
#include "cli.h"

#include <fcntl.h>

#include <CLI/CLI.hpp>
#include <climits>

#include "core/base/text.h"
#include "core/policy/env_policy.h"
#include "core/store/store.h"

namespace agentcage::cli {
namespace {

constexpr const char* kCommandHelp =
    "The command to run and its arguments. Put `--` before it so its own options are not read as "
    "agentcage's.";

bool is_power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

constexpr const char* kNetFooter =
    "Network policy (off unless a network option is given):\n"
    "  with it, connect, UDP sendto/sendmsg and bind to a non-zero port are allowed only to\n"
    "  addresses a --allow-net rule lists; IPv4 rules also cover v4-mapped IPv6. Loopback\n"
    "  is not special (list 127.0.0.1 or ::1), and other spellings of this host (0.0.0.0, ::,\n"
    "  127.x.y.z, ::a.b.c.d) also need the address they reach (127.0.0.1, ::1, a.b.c.d)\n"
    "  unless a rule names them. Unix sockets must be listed with --allow-unix.\n"
    "  Raw and other non-TCP/UDP inet sockets cannot be created. Each denial is a violation\n"
    "  event (mechanism cgroup-bpf).\n"
    "  RULE is CIDR[:PORT[-PORT]][/tcp|/udp], IPv6 in brackets before a port:\n"
    "    127.0.0.1:8000-8100/tcp   10.0.0.0/8   [::1]:443   [2001:db8::/32]:53/udp\n"
    "  --allow-domain NAME[:PORT[-PORT]] allows TCP to a name (registry.npmjs.org, or\n"
    "  *.example.com for the names below it) on PORT, 443 if none: every DNS query of the\n"
    "  sandbox is then answered by agentcage, which forwards only allowed names (to --dns,\n"
    "  default the nameservers of /etc/resolv.conf) and lets the sandbox connect to the\n"
    "  addresses they resolve to, for their TTL. Other names are refused and reported. With\n"
    "  --profile, --allow-domain is the one network option allowed: it adds the name to the\n"
    "  profile's network.domains.\n";

// The network options shared by run and trace.
struct NetOptions {
  std::vector<std::string> allow;
  std::vector<std::string> unix_allow;
  std::string default_action;
  std::vector<std::string> domains;
  std::vector<std::string> dns;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--allow-net", allow, "Allow network access to RULE (repeatable; see below)")
        ->type_name("RULE")
        ->allow_extra_args(false);  // one value per occurrence: never swallow `--` and the command
    cmd->add_option("--allow-unix", unix_allow, "Allow connecting to unix socket PATH or @ABSTRACT (repeatable; '*': any)")
        ->type_name("NAME")
        ->allow_extra_args(false);
    cmd->add_option("--net-default", default_action,
                    "What happens to traffic no rule allows: deny (EPERM), kill (SIGKILL), audit (allow, report)")
        ->check(CLI::IsMember({"deny", "kill", "audit"}))
        ->type_name("ACTION");
    cmd->add_option("--allow-domain", domains,
                    "Allow TCP to NAME (or *.NAME) on PORT, 443 if none; DNS is then answered by agentcage "
                    "(repeatable; see below)")
        ->type_name("NAME[:PORT]")
        ->allow_extra_args(false);
    cmd->add_option("--dns", dns, "Resolver the allowed names are forwarded to: an address or 'system' (repeatable)")
        ->type_name("ADDR")
        ->allow_extra_args(false);
  }

  // nullopt and empty error: no network policy from options (none given, or with a
  // profile only --allow-domain, which amends it: checked into `amend`). Otherwise the
  // policy or the usage error.
  std::optional<core::NetPolicy> policy(bool with_profile, std::vector<std::string>* amend, std::string& err) const {
    if (with_profile) {
      for (const auto& d : domains)
        if (auto r = core::parse_allow_domain(d); !r) {
          err = "--allow-domain: " + r.error().message();
          return std::nullopt;
        }
      *amend = domains;
      core::NetFlags rest{allow, unix_allow, default_action, {}, dns};
      if (rest.empty()) return std::nullopt;
      err = "--allow-net/--allow-unix/--net-default/--dns and --profile both set the network policy\n"
            "hint: put the rules in the profile's network section (--allow-domain may be added to a profile)";
      return std::nullopt;
    }
    core::NetFlags f{allow, unix_allow, default_action, domains, dns};
    if (f.empty()) return std::nullopt;
    auto p = core::net_policy_from_flags(f);
    if (!p) {
      err = p.error().message();
      return std::nullopt;
    }
    return std::move(*p);
  }
};

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

constexpr const char* kPassFdHelp =
    "Let the command inherit descriptor N (above 2, open here; repeatable). Every other descriptor "
    "agentcage inherited is closed before the command starts";

// --pass-fd values as descriptor numbers: each a decimal number above 2 that is open in
// this process (what the command would inherit). Empty error when all are.
std::vector<int> pass_fds(const std::vector<std::string>& specs, std::string& err) {
  std::vector<int> out;
  for (const auto& s : specs) {
    long n = -1;
    if (!s.empty() && s.size() <= 10 && s.find_first_not_of("0123456789") == std::string::npos) n = std::stol(s);
    if (n < 0 || n > INT_MAX) {
      err = "--pass-fd: '" + s + "' is not a file descriptor number (a non-negative integer)";
      return {};
    }
    if (n <= 2) {
      err = "--pass-fd: " + s + " is standard input, output or error, which the command always inherits";
      return {};
    }
    if (::fcntl(static_cast<int>(n), F_GETFD) < 0) {
      err = "--pass-fd: descriptor " + s + " is not open in the caller";
      return {};
    }
    out.push_back(static_cast<int>(n));
  }
  return out;
}

constexpr const char* kPassEnvHelp =
    "Let the command have variable NAME from this environment even if the profile keeps it out "
    "(repeatable; e.g. the model API key the agent runtime needs)";

// Empty when every --pass-env value is a variable name, else the usage error.
std::string check_env_names(const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (!core::valid_env_name(n))
      return "--pass-env: '" + n + "' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)";
  return {};
}

bool is_sandbox_id(const std::string& id) {
  return id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

constexpr const char* kDbHelp =
    "Read this store file directly (agentcaged's, an in-process run's --audit-db, or a collector's); "
    "no daemon needed";

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
  run_cmd->add_option("--profile", run.profile,
                      "Permission profile name or file (see profiles/); a non-root caller through agentcaged gives a name");
  run_cmd->add_option("--workspace", run.workspace, "Directory the agent may work in");
  run_cmd->add_option("--socket", run.socket, "agentcaged's control socket")->capture_default_str();
  run_cmd->add_flag("--no-daemon", run.no_daemon, "Run in-process (root only) even when agentcaged is running");
  run_cmd->add_option("--audit-db", run.audit_db, "In-process runs: the audit store events are appended to")
      ->capture_default_str();
  run_cmd->add_flag("--no-store", run.no_store, "In-process runs: keep no record in the audit store");
  NetOptions run_net;
  run_net.add_to(run_cmd);
  add_deny_options(run_cmd, run.deny_paths, run.deny_execs);
  std::vector<std::string> run_pass_fds;
  run_cmd->add_option("--pass-fd", run_pass_fds, kPassFdHelp)->type_name("N")->allow_extra_args(false);
  run_cmd->add_option("--pass-env", run.pass_env, kPassEnvHelp)->type_name("NAME")->allow_extra_args(false);
  run_cmd->add_option("command", run.command, kCommandHelp)->required();
  run_cmd->footer(std::string(kNetFooter) +
                  "Violations are printed to standard error.\n"
                  "Exit status: the command's own, or 128+N when it was killed by signal N; 127 when the\n"
                  "command does not exist, 126 when it cannot be executed.\n"
                  "SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH are forwarded to the command.\n"
                  "The command inherits standard input, output and error, and no other descriptor\n"
                  "unless named with --pass-fd.\n"
                  "Environment: without --profile the command gets this whole environment; with one,\n"
                  "what its environment section lets in (the shipped profiles keep cloud keys, VCS and\n"
                  "registry tokens, SSH_AUTH_SOCK and *_TOKEN/*_API_KEY/*SECRET*/*PASSWORD* variables\n"
                  "out). The names (never the values) of what was kept out are printed to standard\n"
                  "error; --pass-env NAME lets one through.\n"
                  "With agentcaged running, every run goes through it, root's too: with --profile the\n"
                  "daemon starts the command itself with the whole profile, as your uid, and the run\n"
                  "survives a daemon restart; your death ends it. Without the daemon, root runs the\n"
                  "same engine in-process (so do --no-daemon and --deny-path/--deny-exec).\n"
                  "Example: agentcage run --allow-net 127.0.0.1:8080/tcp -- python3 agent.py");

  TraceArgs trace;
  std::string fmt = "json";
  auto* trace_cmd = app.add_subcommand("trace", "Run a command in a sandbox and print its kernel events");
  trace_cmd->add_option("-o,--format", fmt, "Event format: json (one object per line) or text")
      ->check(CLI::IsMember({"json", "text"}));
  trace_cmd->add_option("--output", trace.output, "Write events to FILE instead of standard output ('-')");
  trace_cmd->add_flag("--host", trace.host, "Record every process on the host, not only the sandbox");
  trace_cmd->add_option("--profile", trace.profile, "Also confine the command with this permission profile (name or file)");
  trace_cmd->add_option("--workspace", trace.workspace, "Directory the agent may work in (with --profile)");
  trace_cmd->add_option("--ring-bytes", trace.ring_bytes, "Kernel ring buffer size in bytes (power of two)")
      ->check(CLI::Range(1u << 16, 1u << 30));
  NetOptions trace_net;
  trace_net.add_to(trace_cmd);
  add_deny_options(trace_cmd, trace.deny_paths, trace.deny_execs);
  std::vector<std::string> trace_pass_fds;
  trace_cmd->add_option("--pass-fd", trace_pass_fds, kPassFdHelp)->type_name("N")->allow_extra_args(false);
  trace_cmd->add_option("--pass-env", trace.pass_env, kPassEnvHelp)->type_name("NAME")->allow_extra_args(false);
  trace_cmd->add_option("--kind", trace.kinds, "Print only this kind (repeatable)")
      ->check(CLI::IsMember(core::event_kinds()));
  trace_cmd->add_flag("--violations", trace.violations_only, "Print only violations");
  trace_cmd->add_option("--exclude", trace.excludes,
                        "Do not print file or exec events whose path matches this glob (repeatable; fnmatch(3): "
                        "'/usr/lib/*' spans directories). Violations and losses are always printed")
      ->type_name("PATH-GLOB")
      ->allow_extra_args(false);
  trace_cmd->add_option("command", trace.command, kCommandHelp);
  trace_cmd->footer(std::string(kNetFooter) +
                    "Without a command, --host records the whole host until interrupted.\n"
                    "Exit status, forwarded signals, inherited descriptors (--pass-fd) and the\n"
                    "environment (--pass-env) as for run.\n"
                    "Example: agentcage trace -o text -- sh -c 'echo hi'");

  PsArgs ps;
  std::string ps_fmt = "text";
  auto* ps_cmd = app.add_subcommand("ps", "List sandboxes (yours; every user's for root)");
  ps_cmd->add_option("--socket", ps.socket, "agentcaged's control socket")->capture_default_str();
  ps_cmd->add_flag("--all", ps.all, "Include closed sandboxes the daemon still remembers");
  ps_cmd->add_option("--limit", ps.limit, "List at most this many, newest first")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  ps_cmd->add_option("-o,--format", ps_fmt, "json or text")->check(CLI::IsMember({"json", "text"}));

  TreeArgs tree;
  std::string tree_fmt = "text";
  auto* tree_cmd = app.add_subcommand("tree", "Show a sandbox's process tree (from the daemon's audit store)");
  tree_cmd->add_option("sandbox", tree.sandbox, "Sandbox id (16 hex digits; see agentcage ps)")->required();
  auto* tree_sock = tree_cmd->add_option("--socket", tree.socket, "agentcaged's control socket")->capture_default_str();
  tree_cmd->add_option("--db", tree.db, kDbHelp)->type_name("FILE")->excludes(tree_sock);
  tree_cmd->add_option("-o,--format", tree_fmt, "json or text")->check(CLI::IsMember({"json", "text"}));
  tree_cmd->footer(
      "Every process the sandbox ran, exited ones included: pid, status (running, or the shell-style exit\n"
      "status) and command line. A process that forked and never exec'd shows its parent's command.\n"
      "With --db the tree is built here from the store file, the same way the daemon builds it.\n"
      "Example: agentcage tree 0123456789abcdef; agentcage tree --db /var/lib/agentcage/audit.db 0123456789abcdef");

  StatusArgs status;
  std::string status_fmt = "text";
  auto* status_cmd = app.add_subcommand("status", "Daemon status: kernel features, enforcement, counters");
  status_cmd->add_option("--socket", status.socket, "agentcaged's control socket")->capture_default_str();
  status_cmd->add_option("-o,--format", status_fmt, "json or text")->check(CLI::IsMember({"json", "text"}));
  status_cmd->footer(
      "Exit status: 0 when the daemon is healthy, 1 when it cannot be reached or refuses,\n"
      "2 when it runs degraded: its audit store is failing (the store: line says since when and why).");

  EventsArgs events;
  std::string events_fmt = "json";
  auto* events_cmd = app.add_subcommand("events", "Show stored events from agentcaged or a store file (live with -f)");
  auto* events_sock = events_cmd->add_option("--socket", events.socket, "agentcaged's control socket")->capture_default_str();
  auto* events_follow = events_cmd->add_flag("-f,--follow", events.follow, "Stream live events until interrupted");
  events_cmd->add_option("--db", events.db, kDbHelp)->type_name("FILE")->excludes(events_sock)->excludes(events_follow);
  events_cmd->add_option("--sandbox", events.sandboxes, "Only this sandbox (repeatable)");
  events_cmd->add_option("--kind", events.kinds, "Only this kind (repeatable)")
      ->check(CLI::IsMember(core::event_kinds()));
  events_cmd->add_flag("--violations", events.violations, "Only violations");
  // Strict: CLI11 would take "-1" for a uint64 and wrap it.
  auto seq_number = CLI::Validator(
      [](const std::string& v) -> std::string {
        auto n = core::parse_u64(v);
        if (!n) return "not a non-negative integer: " + v;
        if (*n > core::kMaxSeq) return "larger than the largest sequence number " + std::to_string(core::kMaxSeq);
        return {};
      },
      "N");
  events_cmd->add_option("--from-seq", events.from_seq, "Start at this store sequence number")->check(seq_number);
  events_cmd->add_option("--limit", events.limit, "At most this many events")->check(seq_number);
  events_cmd->add_option("-o,--format", events_fmt, "json or text")->check(CLI::IsMember({"json", "text"}));
  events_cmd->footer(
      "Without --db, agentcaged answers (Events.Query; Events.Subscribe with -f). With --db the store file\n"
      "is read directly, with the same filters and output; -f needs the daemon.\n"
      "Example: agentcage events --db audit.db --sandbox 0123456789abcdef --violations -o text");

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

  ProfileGenerateArgs gen;
  auto* gen_cmd = profile_cmd->add_subcommand(
      "generate", "Write the least-privilege profile a recorded learning run (mode: audit) needed");
  gen_cmd->add_option("--from", gen.from, "The learning run's sandbox id (16 hex digits)")->required();
  auto* gen_sock = gen_cmd->add_option("--socket", gen.socket, "agentcaged's control socket")->capture_default_str();
  gen_cmd->add_option("--db", gen.db, kDbHelp)->type_name("FILE")->excludes(gen_sock);
  gen_cmd->add_option("--chain-key", gen.chain_key, "With --db: chain key file (keyed stores)")->capture_default_str();
  gen_cmd->add_option("--extends", gen.extends, "The base profile the run extended (name or path)")
      ->capture_default_str();
  gen_cmd->add_option("--name", gen.name, "The new profile's name (default: generated-SANDBOX)");
  gen_cmd->add_option("--workspace", gen.workspace,
                      "The run's workspace: paths inside it are written as ${WORKSPACE}/... (default: the daemon's "
                      "record of it)");
  gen_cmd->add_option("--output", gen.output, "Write the profile to FILE instead of standard output");
  gen_cmd->footer(
      "The learning run is a profile with `mode: audit` extending the base (`extends: default`,\n"
      "`mode: audit`): it denies nothing and reports each action the base would deny. Each report\n"
      "becomes a grant of the new profile (which extends the same base, enforcing): a file's\n"
      "directory (the file alone where the directory is a top-level tree or holds a path the base\n"
      "denies), an exec'd image's directory, a syscall, a network destination, each commented\n"
      "with the first report that needed it. Paths the base denies are never granted (listed on\n"
      "standard error). The result is checked as `profile lint` checks a file.\n"
      "Example: agentcage profile generate --from 0123456789abcdef --extends default --output job.yaml");

  auto* audit_cmd = app.add_subcommand("audit", "Check, report on and ship the tamper-evident audit store");
  audit_cmd->require_subcommand(1);
  AuditVerifyArgs verify;
  auto* verify_cmd = audit_cmd->add_subcommand("verify", "Check the store's hash chain: OK, or the first broken link");
  verify_cmd->add_option("--db", verify.db, "Store file")->capture_default_str();
  verify_cmd->add_option("--chain-key", verify.chain_key, "Chain key file (keyed stores)")->capture_default_str();
  verify_cmd->add_option("--against", verify.against, "Collector HOST:PORT whose checkpoints anchor the store");
  verify_cmd->add_flag("--insecure", verify.insecure, "--against: plaintext, no TLS (only on a trusted network)");
  verify_cmd->add_option("--ca", verify.ca, "--against: PEM CA certificates for the collector");
  verify_cmd->add_option("--cert", verify.cert, "--against: PEM client certificate for mTLS");
  verify_cmd->add_option("--key", verify.key, "--against: PEM client key for mTLS");
  verify_cmd->add_option("--server-name", verify.server_name, "--against: name expected in the collector's certificate");
  verify_cmd->add_option("--node", verify.node, "--against: node name the store was shipped under (default: this host)");
  verify_cmd->add_option("--checkpoint", verify.checkpoint_file, "A checkpoint file written by 'audit checkpoint'");
  verify_cmd->footer(
      "Prints 'OK: N events, chain intact' and the head it verified (exit 0), or\n"
      "'BROKEN at seq N: what' (exit 1): edited, deleted, reordered and re-chained rows are named.\n"
      "A keyed chain (HMAC-SHA256 with the chain key) needs the key to verify: run as root.\n"
      "--against/--checkpoint also check the store against heads signed earlier: a truncated,\n"
      "re-chained or replaced store fails. Exit 2 when the store or the anchors cannot be read.");

  AuditCheckpointArgs checkpoint;
  auto* checkpoint_cmd = audit_cmd->add_subcommand("checkpoint", "Write the store's head, signed, as a checkpoint file");
  checkpoint_cmd->add_option("--db", checkpoint.db, "Store file")->capture_default_str();
  checkpoint_cmd->add_option("--chain-key", checkpoint.chain_key, "Chain key file")->capture_default_str();
  checkpoint_cmd->add_option("--output", checkpoint.output, "File to write ('-': stdout)")->capture_default_str();
  checkpoint_cmd->add_option("--node", checkpoint.node, "Node name to record (default: this host's name)");
  checkpoint_cmd->footer(
      "Keep the file somewhere the node cannot rewrite (or notarise it); later\n"
      "'agentcage audit verify --checkpoint FILE' fails if the store no longer reaches it.");

  AuditKeygenArgs keygen;
  auto* keygen_cmd = audit_cmd->add_subcommand("keygen", "Create the chain key (root only, 0600), or rotate it");
  keygen_cmd->add_option("--chain-key", keygen.chain_key, "Key file")->capture_default_str();
  keygen_cmd->add_flag("--rotate", keygen.rotate, "Append a new key; older keys stay to verify older rows");
  keygen_cmd->footer(
      "agentcaged creates the key on its first start. After --rotate, restart agentcaged: new\n"
      "rows are keyed with the new key from then on (the store records where each key starts).");

  AuditReportArgs report;
  std::string report_fmt = "text";
  auto* report_cmd = audit_cmd->add_subcommand("report", "Incident report on one sandbox, from its stored events");
  report_cmd->add_option("--sandbox", report.sandbox, "Sandbox id (16 hex digits)")->required();
  auto* report_sock = report_cmd->add_option("--socket", report.socket, "agentcaged's control socket")->capture_default_str();
  report_cmd->add_option("--db", report.db, kDbHelp)->type_name("FILE")->excludes(report_sock);
  report_cmd->add_option("-o,--format", report_fmt, "text, json (one document) or html (one self-contained file)")
      ->check(CLI::IsMember({"text", "json", "html"}));
  report_cmd->add_option("--output", report.output, "Write the report to FILE (mode 0600) instead of standard output");
  report_cmd->add_option("--chain-key", report.chain_key, "With --db: chain key file (keyed stores)")
      ->capture_default_str();
  report_cmd->add_option("--workspace", report.workspace,
                         "The sandbox's workspace, when the source does not know it (files inside it are only counted)");
  report_cmd->footer(
      "Sections: the sandbox (node, owner, profile, times, how it ended, losses), a timeline of execs,\n"
      "violations, network actions and writes outside the workspace, the process tree, files read and\n"
      "written outside the workspace, network actions with their outcome, every violation, and whether\n"
      "the records verify (--db: the store's hash chain is checked; through the daemon they are not).\n"
      "Text output escapes every byte an agent controls; long sections end with \"... N more\" (json\n"
      "and html keep everything).\n"
      "Exit status: 0, 1 when the store's chain is broken (the report says where), 2 when nothing\n"
      "could be read.\n"
      "Example: agentcage audit report --db audit.db --sandbox 0123456789abcdef -o html --output incident.html");

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
  push_cmd->add_option("--chain-key", push.chain_key, "Chain key that signs the checkpoints sent")
      ->capture_default_str();
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
  coll_cmd->add_option("--chain-key", coll.chain_key, "Key for the collector store's own chain (created if missing)")
      ->capture_default_str();
  coll_cmd->add_flag("--insecure", coll.insecure, "Accept plaintext, no TLS (only on a trusted network)");
  coll_cmd->add_option("--tls-cert", coll.tls_cert, "PEM server certificate chain");
  coll_cmd->add_option("--tls-key", coll.tls_key, "PEM server key");
  coll_cmd->add_option("--tls-client-ca", coll.tls_client_ca,
                       "PEM CA: require client certificates signed by it (mTLS); a node may then only push "
                       "under a name (CN or SAN) of its certificate");
  coll_cmd->add_flag("--insecure-accept-any-node", coll.accept_any_node,
                     "Without --tls-client-ca: accept any client as any node (unauthenticated; only on a trusted "
                     "network)");
  coll_cmd->footer(
      "Stores events from many nodes once each (dedup by node, store and seq) in its own\n"
      "hash-chained store; prints 'listening on ADDR:PORT' and runs until SIGINT/SIGTERM.\n"
      "Nodes must authenticate (--tls-client-ca) unless --insecure-accept-any-node says otherwise.\n"
      "A resent seq whose content differs from the stored one is refused (ALREADY_EXISTS) and\n"
      "kept in the store's conflicts table: two histories under one node name.");

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
      msg = "a command is required: run, trace, ps, tree, events, status, profile, audit or collector";
    else if (dynamic_cast<const CLI::RequiredError*>(&e) && *profile_cmd && profile_cmd->get_subcommands().empty())
      msg = "profile: a subcommand is required: lint, show or generate";
    return Exit{2, "agentcage: " + msg + "\nRun 'agentcage --help' for usage."};
  }

  for (auto [opt, paths] : {std::pair{"--deny-path", &run.deny_paths}, std::pair{"--deny-exec", &run.deny_execs},
                            std::pair{"--deny-path", &trace.deny_paths}, std::pair{"--deny-exec", &trace.deny_execs}})
    if (auto e = check_absolute(opt, *paths); !e.empty()) return Exit{2, e};
  std::string err;
  if (*run_cmd) {
    run.net = run_net.policy(!run.profile.empty(), &run.allow_domains, err);
    if (err.empty()) run.pass_fds = pass_fds(run_pass_fds, err);
    if (err.empty()) err = check_env_names(run.pass_env);
    if (!err.empty()) return Exit{2, "agentcage: run: " + err};
    return run;
  }
  if (*lint_cmd) return lint;
  if (*verify_cmd) {
    if (!verify.against.empty() && !verify.checkpoint_file.empty())
      return Exit{2, "agentcage: audit verify: --against and --checkpoint exclude each other"};
    if (verify.against.empty() && (verify.insecure || !verify.ca.empty() || !verify.cert.empty() ||
                                   !verify.key.empty() || !verify.server_name.empty() || !verify.node.empty()))
      return Exit{2, "agentcage: audit verify: the TLS options and --node go with --against"};
    if (verify.insecure && !(verify.ca.empty() && verify.cert.empty() && verify.key.empty()))
      return Exit{2, "agentcage: audit verify: --insecure excludes --ca, --cert and --key"};
    if (verify.cert.empty() != verify.key.empty())
      return Exit{2, "agentcage: audit verify: --cert and --key go together (mTLS)"};
    return verify;
  }
  if (*checkpoint_cmd) return checkpoint;
  if (*keygen_cmd) return keygen;
  if (*report_cmd) {
    if (!is_sandbox_id(report.sandbox))
      return Exit{2, "agentcage: audit report: --sandbox: '" + report.sandbox + "' is not a sandbox id (16 hex digits)"};
    report.format = report_fmt == "json" ? ReportFormat::json : report_fmt == "html" ? ReportFormat::html : ReportFormat::text;
    return report;
  }
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
    if (coll.tls_client_ca.empty() && !coll.accept_any_node)
      return Exit{2,
                  "agentcage: collector: no client authentication: pass --tls-client-ca CA (each node pushes only "
                  "under its certificate's name), or --insecure-accept-any-node to let any client push as any node"};
    if (!coll.tls_client_ca.empty() && coll.accept_any_node)
      return Exit{2, "agentcage: collector: --insecure-accept-any-node excludes --tls-client-ca"};
    return coll;
  }
  if (*show_cmd) return show;
  if (*gen_cmd) {
    if (!is_sandbox_id(gen.from))
      return Exit{2, "agentcage: profile generate: --from: '" + gen.from + "' is not a sandbox id (16 hex digits)"};
    if (gen.name.empty()) gen.name = "generated-" + gen.from;
    return gen;
  }
  auto fmt_of = [](const std::string& f) { return f == "text" ? OutputFormat::text : OutputFormat::json; };
  if (*ps_cmd) {
    ps.format = fmt_of(ps_fmt);
    return ps;
  }
  if (*tree_cmd) {
    tree.format = fmt_of(tree_fmt);
    if (!is_sandbox_id(tree.sandbox))
      return Exit{2, "agentcage: tree: '" + tree.sandbox + "' is not a sandbox id (16 hex digits; see agentcage ps)"};
    return tree;
  }
  if (*status_cmd) {
    status.format = fmt_of(status_fmt);
    return status;
  }
  if (*events_cmd) {
    events.format = fmt_of(events_fmt);
    for (const auto& id : events.sandboxes)
      if (!is_sandbox_id(id))
        return Exit{2, "agentcage: --sandbox: '" + id + "' is not a sandbox id (16 hex digits; see agentcage ps)"};
    return events;
  }
  trace.net = trace_net.policy(!trace.profile.empty(), &trace.allow_domains, err);
  if (err.empty()) trace.pass_fds = pass_fds(trace_pass_fds, err);
  if (err.empty()) err = check_env_names(trace.pass_env);
  if (!err.empty()) return Exit{2, "agentcage: trace: " + err};
  trace.format = fmt == "text" ? OutputFormat::text : OutputFormat::json;
  if (!is_power_of_two(trace.ring_bytes))
    return Exit{2, "agentcage: --ring-bytes: " + std::to_string(trace.ring_bytes) + " is not a power of two"};
  if (trace.command.empty() && !trace.pass_fds.empty())
    return Exit{2, "agentcage: trace: --pass-fd needs a command to pass the descriptors to"};
  if (trace.command.empty() && !trace.pass_env.empty())
    return Exit{2, "agentcage: trace: --pass-env needs a command to pass the variables to"};
  if (trace.command.empty() && !trace.host)
    return Exit{2, "agentcage: trace: a command is required (or --host to record the whole host)\n"
                   "Run 'agentcage trace --help' for usage."};
  return trace;
}

}  // namespace agentcage::cli
