// SPDX-License-Identifier: Apache-2.0
// gRPC adapters for the remote audit stream: the client transport behind
// core::AuditClient, and the reference collector's AuditSink service. Thin: the delivery
// logic lives in core/audit_client and core/audit_collector, which never see gRPC.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <chrono>

#include "core/audit/audit_client.h"
#include "core/audit/audit_collector.h"
#include "core/base/result.h"
#include "core/store/store.h"

namespace agentcage::rpc {

// Largest message either side accepts; a batch above it fails with RESOURCE_EXHAUSTED.
inline constexpr int kMaxMessageBytes = 4 << 20;

struct AuditTransportOptions {
  std::string endpoint;     // HOST:PORT
  bool insecure = false;    // plaintext; only when asked for
  std::string ca_file;      // PEM roots for the collector's certificate; empty: system roots
  std::string cert_file;    // mTLS: this node's certificate chain (PEM)
  std::string key_file;     // mTLS: its private key (PEM)
  std::string server_name;  // expected name in the collector's certificate (default: the host)
};

// Checks the options and reads the PEM files now, so a bad path fails at start.
core::Result<std::unique_ptr<core::AuditConnector>> make_audit_connector(const AuditTransportOptions& o);

// AuditSink.Checkpoints: what the collector keeps of `node`'s signed heads (of `store_id`
// when not empty, else of every store of the node), newest first.
core::Result<std::vector<v1::Checkpoint>> fetch_checkpoints(const AuditTransportOptions& o, const std::string& node,
                                                            const std::string& store_id,
                                                            std::chrono::seconds timeout = std::chrono::seconds(30));

struct CollectorServerOptions {
  std::string listen;          // ADDR:PORT; port 0 picks a free one (see CollectorServer::port)
  bool insecure = false;       // plaintext; only when asked for
  std::string tls_cert;        // PEM chain
  std::string tls_key;         // PEM key
  std::string tls_client_ca;   // set: mTLS, clients must present a certificate signed by it,
                               // and a stream's node must be its CN or a SAN (else PERMISSION_DENIED)
  // Without tls_client_ca nothing ties a stream to the node it names, so any client could
  // push a history under any node's name: start() refuses unless this says so explicitly.
  bool accept_any_node = false;
  core::CollectorLimits limits;
};

class CollectorServer {
 public:
  // Serves AuditSink.Push on opts.listen, storing into `store` (a collector store).
  static core::Result<std::unique_ptr<CollectorServer>> start(core::EventStore& store,
                                                               const CollectorServerOptions& opts);
  ~CollectorServer();  // shutdown()
  int port() const;
  // Ends every stream (waiting up to `grace` for batches in flight), then stops.
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));
  core::CollectorWriter::Stats stats() const;

 private:
  struct Impl;
  explicit CollectorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentcage::rpc
