// SPDX-License-Identifier: Apache-2.0
// Command-line parsing for `agentcage`, apart from execution so it is unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace agentcage::cli {

enum class OutputFormat { json, text };

// agentcage run [--profile P] [--workspace DIR] -- CMD ARGS...
struct RunArgs {
  std::vector<std::string> command;
  std::string profile;
  std::string workspace;
};

// agentcage trace [-o json|text] [--output FILE] [--host] [--ring-bytes N] [-- CMD ARGS...]
struct TraceArgs {
  std::vector<std::string> command;
  OutputFormat format = OutputFormat::json;
  std::string output = "-";
  bool host = false;
  uint32_t ring_bytes = 16u << 20;
};

// agentcage audit verify [--db FILE]
struct AuditVerifyArgs {
  std::string db = "/var/lib/agentcage/audit.db";
};

// agentcage audit push --db FILE --endpoint HOST:PORT [TLS options | --insecure] [--all] [--once]
struct AuditPushArgs {
  std::string db = "/var/lib/agentcage/audit.db";
  std::string endpoint;
  bool insecure = false;
  std::string ca, cert, key, server_name;
  bool all = false;
  bool once = false;
  std::string node;
  uint32_t batch = 512;
  uint32_t timeout_s = 60;  // --once: give up after this long
};

// agentcage collector --listen ADDR --db FILE [--tls-cert F --tls-key F [--tls-client-ca F] | --insecure]
struct CollectorArgs {
  std::string listen;
  std::string db = "/var/lib/agentcage/collector.db";
  bool insecure = false;
  std::string tls_cert, tls_key, tls_client_ca;
};

// What the parser decided: run a command, or exit now printing `text`
// (help: status 0 on stdout; usage errors: status 2 on stderr).
struct Exit {
  int status = 0;
  std::string text;
};

using Parsed = std::variant<RunArgs, TraceArgs, AuditVerifyArgs, AuditPushArgs, CollectorArgs, Exit>;

Parsed parse(const std::vector<std::string>& args);  // args excludes argv[0]

}  // namespace agentcage::cli
