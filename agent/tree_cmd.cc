// SPDX-License-Identifier: Apache-2.0
// `agentcage tree SANDBOX`: the sandbox's process tree, as agentcaged rebuilds it from
// the audit store (Events.ProcessTree).
#include <cstdio>
#include <string>

#include "agentcage/v1/control.grpc.pb.h"
#include "cli.h"
#include "core/base/text.h"
#include "core/events/event_json.h"
#include "grpc/client.h"

namespace agentcage::cli {
namespace {

std::string command_of(const v1::Process& p) {
  std::string cmd;
  for (const auto& a : p.argv()) cmd += (cmd.empty() ? "" : " ") + a;
  if (p.argv_truncated()) cmd += " ...";
  if (cmd.empty()) cmd = !p.binary().empty() ? p.binary() : "[" + p.comm() + "]";
  return core::escape_text(cmd);  // argv is the agent's bytes: never raw on a terminal
}

// One line per process, children indented under their parent with tree rules.
void print(const v1::ProcessNode& n, const std::string& prefix, const std::string& branch) {
  std::string state = n.exited() ? "exit " + std::to_string(n.exit_status()) : "running";
  printf("%s%s%u  %s  %s\n", prefix.c_str(), branch.c_str(), n.process().pid(), state.c_str(),
         command_of(n.process()).c_str());
  std::string child_prefix = prefix + (branch.empty() ? "" : branch == "`- " ? "   " : "|  ");
  for (int i = 0; i < n.children_size(); ++i)
    print(n.children(i), child_prefix, i + 1 == n.children_size() ? "`- " : "|- ");
}

}  // namespace

int run_tree(const TreeArgs& a) {
  auto ch = grpcapi::connect_daemon(a.socket);
  if (!ch) {
    fprintf(stderr, "agentcage: error: %s\n", ch.error().message().c_str());
    return 1;
  }
  auto stub = v1::Events::NewStub(*ch);
  v1::ProcessTreeRequest req;
  req.set_sandbox_id(a.sandbox);
  v1::ProcessTreeResponse resp;
  grpc::ClientContext ctx;
  if (auto st = stub->ProcessTree(&ctx, req, &resp); !st.ok()) {
    fprintf(stderr, "agentcage: error: %s\n", grpcapi::rpc_error("ProcessTree", st).message().c_str());
    return 1;
  }
  if (a.format == OutputFormat::json) {
    printf("%s\n", core::message_json(resp).c_str());
    return 0;
  }
  if (resp.roots_size() == 0) {
    printf("no processes recorded for sandbox %s\n", a.sandbox.c_str());
    return 0;
  }
  for (const auto& r : resp.roots()) print(r, "", "");
  return 0;
}

}  // namespace agentcage::cli
