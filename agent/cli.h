// SPDX-License-Identifier: Apache-2.0
// Command-line parsing for `agentcage`, apart from execution so it is unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/base/paths.h"
#include "core/policy/net_policy.h"
#include "core/store/chain_key.h"

namespace agentcage::cli {

using core::kDefaultChainKeyPath;

enum class OutputFormat { json, text };

// agentcage run [--profile P] [--workspace DIR] [network options] [--pass-fd N]... [--pass-env NAME]...
//               -- CMD ARGS...
// Network options (run and trace): --allow-net RULE (repeatable), --allow-unix NAME
// (repeatable), --net-default deny|kill|audit. Any of them switches the policy on.
struct RunArgs {
  std::vector<std::string> command;
  std::string profile;
  std::string workspace;
  std::optional<core::NetPolicy> net;  // set when a network option was given (without --profile)
  std::vector<std::string> allow_domains;  // --allow-domain with --profile: added to its network.domains
  std::string socket = core::kDefaultSocket;
  bool no_daemon = false;  // run the core in-process even if a daemon listens
  std::string audit_db = core::kDefaultStorePath;  // embedded mode: the local store
  bool no_store = false;
  std::vector<std::string> deny_paths;  // --deny-path: no open or exec (BPF LSM, by inode)
  std::vector<std::string> deny_execs;  // --deny-exec: no exec (BPF LSM, by inode)
  std::vector<int> pass_fds;  // --pass-fd: descriptors above 2 the command inherits (checked open)
  // --pass-env: variables the command gets from the caller even if the profile's
  // environment section keeps them out (names checked: [A-Za-z_][A-Za-z0-9_]*).
  std::vector<std::string> pass_env;
};

// agentcage ps [--all] [-o json|text]
struct PsArgs {
  std::string socket = core::kDefaultSocket;
  bool all = false;
  unsigned limit = 1000;  // newest first
  OutputFormat format = OutputFormat::text;
};

// agentcage tree [--db FILE | --socket S] [-o json|text] SANDBOX
struct TreeArgs {
  std::string socket = core::kDefaultSocket;
  std::string db;  // set: read this store file directly, no daemon
  std::string sandbox;
  OutputFormat format = OutputFormat::text;
};

// agentcage status [-o json|text]
struct StatusArgs {
  std::string socket = core::kDefaultSocket;
  OutputFormat format = OutputFormat::text;
};

// agentcage events [-f | --db FILE] [--sandbox ID]... [--violations] [--kind K]... [-o json|text]
struct EventsArgs {
  std::string socket = core::kDefaultSocket;
  std::string db;  // set: read this store file directly, no daemon
  bool follow = false;
  std::vector<std::string> sandboxes;
  std::vector<std::string> kinds;
  bool violations = false;
  uint64_t from_seq = 0;
  uint32_t limit = 0;
  OutputFormat format = OutputFormat::json;
};

// agentcage trace [-o json|text] [--output FILE] [--host] [--ring-bytes N] [-- CMD ARGS...]
struct TraceArgs {
  std::vector<std::string> command;
  OutputFormat format = OutputFormat::json;
  std::string output = "-";
  bool host = false;
  uint32_t ring_bytes = 16u << 20;
  std::string profile;                 // as in RunArgs: confine the traced command
  std::string workspace;
  std::optional<core::NetPolicy> net;  // set when a network option was given (without --profile)
  std::vector<std::string> allow_domains;  // --allow-domain with --profile: added to its network.domains
  std::vector<std::string> deny_paths;  // as in RunArgs
  std::vector<std::string> deny_execs;
  std::vector<int> pass_fds;  // as in RunArgs
  std::vector<std::string> pass_env;  // as in RunArgs
  // What is printed (the record and the summary are whole): as `events` filters.
  std::vector<std::string> kinds;     // --kind (repeatable); empty: every kind
  bool violations_only = false;       // --violations
  std::vector<std::string> excludes;  // --exclude PATH-GLOB: file and exec events on these paths
};

// agentcage profile lint [--workspace DIR] FILE...
struct ProfileLintArgs {
  std::vector<std::string> files;
  std::string workspace;
};

// agentcage profile show [--workspace DIR] NAME
struct ProfileShowArgs {
  std::string name;  // a profile name on the search path, or a path to a .yaml file
  std::string workspace;
};

// agentcage profile generate --from SANDBOX [--db FILE | --socket PATH] [--extends BASE]
//                            [--name NAME] [--workspace DIR] [--output FILE]
struct ProfileGenerateArgs {
  std::string from;                 // the learning run's sandbox id
  std::string db;                   // set: read this store file; else ask the daemon
  std::string socket = core::kDefaultSocket;
  std::string chain_key = kDefaultChainKeyPath;
  std::string extends = "default";  // the base the learning run extended
  std::string name;                 // default: generated-<sandbox id>
  std::string workspace;            // the run's workspace (default: the daemon's record of it)
  std::string output = "-";
};

// agentcage audit verify [--db FILE] [--chain-key FILE]
//                        [--against HOST:PORT [TLS options | --insecure] [--node N] | --checkpoint FILE]
struct AuditVerifyArgs {
  std::string db = core::kDefaultStorePath;
  std::string chain_key = kDefaultChainKeyPath;
  std::string against;          // collector endpoint whose checkpoints anchor the store
  bool insecure = false;
  std::string ca, cert, key, server_name;
  std::string node;             // the node name the store was shipped under (default: this host)
  std::string checkpoint_file;  // a checkpoint written by `audit checkpoint`
};

// agentcage audit checkpoint [--db FILE] [--chain-key FILE] [--output FILE] [--node N]
struct AuditCheckpointArgs {
  std::string db = core::kDefaultStorePath;
  std::string chain_key = kDefaultChainKeyPath;
  std::string output = "-";
  std::string node;
};

// agentcage audit keygen [--chain-key FILE] [--rotate]
struct AuditKeygenArgs {
  std::string chain_key = kDefaultChainKeyPath;
  bool rotate = false;
};

// agentcage audit report --sandbox ID [--db FILE | --socket S] [-o text|json|html] [--output FILE]
//                        [--workspace DIR]
enum class ReportFormat { text, json, html };
struct AuditReportArgs {
  std::string sandbox;
  std::string db;  // set: read this store file directly (and verify it); else ask the daemon
  std::string socket = core::kDefaultSocket;
  ReportFormat format = ReportFormat::text;
  std::string output = "-";
  std::string workspace;  // overrides the daemon's record of the sandbox's workspace
  std::string chain_key = kDefaultChainKeyPath;  // --db: verifies a keyed store's chain
};

// agentcage audit push --db FILE --endpoint HOST:PORT [TLS options | --insecure] [--all] [--once]
struct AuditPushArgs {
  std::string db = core::kDefaultStorePath;
  std::string endpoint;
  bool insecure = false;
  std::string ca, cert, key, server_name;
  bool all = false;
  bool once = false;
  std::string node;
  uint32_t batch = 512;
  uint32_t timeout_s = 60;  // --once: give up after this long
  std::string chain_key = kDefaultChainKeyPath;  // signs the checkpoints sent
};

// agentcage collector --listen ADDR --db FILE [--tls-cert F --tls-key F] [--tls-client-ca F | --insecure-accept-any-node]
//                     [--insecure]
struct CollectorArgs {
  std::string listen;
  std::string db = core::kDefaultCollectorStorePath;
  bool insecure = false;
  bool accept_any_node = false;  // --insecure-accept-any-node: no client authentication
  std::string tls_cert, tls_key, tls_client_ca;
  std::string chain_key = kDefaultChainKeyPath;  // keys the collector store's own chain
};

// What the parser decided: run a command, or exit now printing `text`
// (help: status 0 on stdout; usage errors: status 2 on stderr).
struct Exit {
  int status = 0;
  std::string text;
};

using Parsed = std::variant<RunArgs, TraceArgs, PsArgs, StatusArgs, EventsArgs, ProfileLintArgs, ProfileShowArgs,
                            ProfileGenerateArgs, AuditVerifyArgs, AuditCheckpointArgs, AuditKeygenArgs, AuditPushArgs, CollectorArgs,
                            TreeArgs, AuditReportArgs, Exit>;

Parsed parse(const std::vector<std::string>& args);  // args excludes argv[0]

// `agentcage tree`: prints a sandbox's process tree from the daemon. Defined in
// tree_cmd.cc, part of the agentcage binary only (not of the parsing library).
int run_tree(const TreeArgs& a);
// `agentcage audit report`: defined in report_cmd.cc, like run_tree.
int run_report(const AuditReportArgs& a);
// `agentcage profile generate`: also in report_cmd.cc (it reads events the same way).
int run_profile_generate(const ProfileGenerateArgs& a);

}  // namespace agentcage::cli
