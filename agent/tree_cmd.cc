// SPDX-License-Identifier: Apache-2.0
// `agentcage tree SANDBOX`: the sandbox's process tree, as agentcaged rebuilds it from
// the audit store (Events.ProcessTree), or, with --db, as this process rebuilds it from
// the store file with the same builder.
#include <cstdio>
#include <string>

#include "agentcage/v1/control.grpc.pb.h"
#include "cli.h"
#include "core/events/event_json.h"
#include "core/report/report.h"
#include "grpc/client.h"
#include "offline.h"

namespace agentcage::cli {
namespace {

core::Result<v1::ProcessTreeResponse> tree_from_daemon(const TreeArgs& a) {
  auto ch = grpcapi::connect_daemon(a.socket);
  if (!ch) return std::unexpected(ch.error());
  auto stub = v1::Events::NewStub(*ch);
  v1::ProcessTreeRequest req;
  req.set_sandbox_id(a.sandbox);
  v1::ProcessTreeResponse resp;
  grpc::ClientContext ctx;
  if (auto st = stub->ProcessTree(&ctx, req, &resp); !st.ok()) return std::unexpected(grpcapi::rpc_error("ProcessTree", st));
  return resp;
}

core::Result<v1::ProcessTreeResponse> tree_from_store(const TreeArgs& a) {
  auto store = open_store_file(a.db);
  if (!store) return std::unexpected(store.error());
  return store_process_tree(**store, a.sandbox);
}

}  // namespace

int run_tree(const TreeArgs& a) {
  auto resp = a.db.empty() ? tree_from_daemon(a) : tree_from_store(a);
  if (!resp) {
    fprintf(stderr, "agentcage: error: %s\n", resp.error().message().c_str());
    return 1;
  }
  if (a.format == OutputFormat::json) {
    printf("%s\n", core::message_json(*resp).c_str());
    return 0;
  }
  if (resp->roots_size() == 0) {
    printf("no processes recorded for sandbox %s\n", a.sandbox.c_str());
    return 0;
  }
  for (const auto& line : core::process_tree_lines(*resp)) printf("%s\n", line.c_str());
  return 0;
}

}  // namespace agentcage::cli
