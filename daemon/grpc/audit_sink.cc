// SPDX-License-Identifier: Apache-2.0
#include "grpc/audit_sink.h"

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>

#include "agentcage/v1/audit.grpc.pb.h"
#include "grpc/status_interceptor.h"

namespace agentcage::rpc {
namespace {

using core::Result;

Result<std::string> read_pem(const std::string& path, const char* what) {
  std::ifstream f(path);
  if (!f) return core::sys_error(fmt::format("read {} {}", what, path), errno);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (s.find("-----BEGIN ") == std::string::npos)
    return core::error(fmt::format("{} {}: not a PEM file (no -----BEGIN line)", what, path));
  return s;
}

const char* code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::UNKNOWN: return "UNKNOWN";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND: return "NOT_FOUND";
    case grpc::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::ABORTED: return "ABORTED";
    case grpc::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::INTERNAL: return "INTERNAL";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::DATA_LOSS: return "DATA_LOSS";
    default: return "UNKNOWN";
  }
}

// --- client transport ---

class GrpcStream final : public core::AuditStream {
 public:
  explicit GrpcStream(const std::shared_ptr<grpc::Channel>& ch) : stub_(v1::AuditSink::NewStub(ch)) {
    rw_ = stub_->Push(&ctx_);
  }
  bool write(const v1::EventBatch& b) override { return rw_->Write(b); }
  bool read(v1::Ack* a) override { return rw_->Read(a); }
  void writes_done() override { rw_->WritesDone(); }
  void cancel() override { ctx_.TryCancel(); }
  std::string finish() override {
    grpc::Status s = rw_->Finish();
    if (s.ok()) return {};
    return fmt::format("{}: {}", code_name(s.error_code()), s.error_message());
  }

 private:
  std::unique_ptr<v1::AuditSink::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::EventBatch, v1::Ack>> rw_;
};

class GrpcConnector final : public core::AuditConnector {
 public:
  GrpcConnector(std::string endpoint, std::shared_ptr<grpc::ChannelCredentials> creds, std::string server_name)
      : endpoint_(std::move(endpoint)), creds_(std::move(creds)), server_name_(std::move(server_name)) {}

  std::unique_ptr<core::AuditStream> connect() override {
    grpc::ChannelArguments args;
    // A fresh channel per attempt with its own subchannel pool: gRPC's shared reconnect
    // backoff (up to minutes) must not delay us after the collector is back; our client
    // does its own, shorter backoff.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    // Keepalive finds a collector that vanished without closing the connection.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    args.SetMaxSendMessageSize(kMaxMessageBytes);
    args.SetMaxReceiveMessageSize(kMaxMessageBytes);
    if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
    return std::make_unique<GrpcStream>(grpc::CreateCustomChannel(endpoint_, creds_, args));
  }
  std::string endpoint() const override { return endpoint_; }

 private:
  std::string endpoint_;
  std::shared_ptr<grpc::ChannelCredentials> creds_;
  std::string server_name_;
};

// --- collector service ---

// One Push stream. Strictly alternating: read a batch, store it (on the writer thread),
// write its ack, read the next; so at most one read or write is ever outstanding, and
// the reactor stays alive while the writer holds it (Finish has not been called).
// Push is a raw method: gRPC's own parse of a typed message that fails ends a bidi
// stream as if the client had half-closed (OK), which would let a broken or hostile
// client look like a clean end; parsing here names it instead.
class PushReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // `cert_names`: with mTLS, the names in the client's certificate (CN and SANs); the
  // stream may only speak for one of them. Empty without mTLS.
  PushReactor(core::EventStore& store, core::CollectorWriter& writer, const core::CollectorLimits& limits,
              const std::atomic<bool>& stopping, std::string peer, std::vector<std::string> cert_names)
      : store_(store),
        writer_(writer),
        limits_(limits),
        stopping_(stopping),
        peer_(std::move(peer)),
        cert_names_(std::move(cert_names)) {
    StartRead(&raw_in_);
  }

  void OnReadDone(bool ok) override {
    if (ok && stopping_) {
      // Shutting down: take no new batch (the client keeps it and resends elsewhere/later).
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "collector shutting down"));
      return;
    }
    if (!ok) {  // the client half-closed (or went away)
      if (!st_.node.empty())
        spdlog::info("collector: stream from {} (node {}) ended after seq {}", peer_, st_.node, st_.last_seq);
      Finish(grpc::Status::OK);
      return;
    }
    ++messages_;
    if (auto why = parse(); !why.empty()) {
      spdlog::warn("collector: rejecting message {} from {}: {}", messages_, peer_, why);
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, why));
      return;
    }
    on_batch();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away before the ack"));
      return;
    }
    if (stopping_) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "collector shutting down"));
      return;
    }
    in_.Clear();
    raw_in_.Clear();
    StartRead(&raw_in_);
  }

  void OnDone() override { delete this; }

 private:
  // raw_in_ into in_; "" or why it is not an EventBatch.
  std::string parse() {
    std::vector<grpc::Slice> slices;
    if (!raw_in_.Dump(&slices).ok()) return fmt::format("message {}: unreadable", messages_);
    std::string bytes;
    bytes.reserve(raw_in_.Length());
    for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    raw_in_.Clear();
    if (!in_.ParseFromString(bytes))
      return fmt::format(
          "message {} ({} bytes) is not an agentcage.v1.EventBatch (malformed protobuf, or a string field "
          "that is not UTF-8)",
          messages_, bytes.size());
    return {};
  }

  void send_ack() {
    std::string bytes = out_.SerializeAsString();
    grpc::Slice sl(bytes);
    raw_out_ = grpc::ByteBuffer(&sl, 1);
    StartWrite(&raw_out_);
  }

  void on_batch() {
    if (auto why = core::validate_batch(in_, st_, limits_); !why.empty()) {
      spdlog::warn("collector: rejecting a batch from {}: {}", peer_, why);
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, why));
      return;
    }
    if (st_.node.empty() && !cert_names_.empty() &&
        std::find(cert_names_.begin(), cert_names_.end(), in_.node()) == cert_names_.end()) {
      // A certified node must not write into another node's history.
      std::string names;
      for (const auto& n : cert_names_) names += (names.empty() ? "" : ", ") + n;
      spdlog::warn("collector: {} sent node '{}' but its certificate names {}", peer_, in_.node(), names);
      Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          fmt::format("node: '{}' is not a name in the client certificate ({})", in_.node(), names)));
      return;
    }
    if (st_.node.empty()) {
      st_.node = in_.node();
      st_.store_id = in_.store_id();
      spdlog::info("collector: stream from {}: node {} store {}", peer_, st_.node, st_.store_id);
    }
    out_.Clear();
    out_.set_node(st_.node);
    out_.set_store_id(st_.store_id);
    if (in_.events_size() == 0 && !in_.has_checkpoint() && in_.unstored_size() == 0) {
      // The hello (or a keepalive batch): where this node's store stands here.
      auto high = store_.origin_high(st_.node, st_.store_id);
      if (!high) {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "collector store: " + high.error().message()));
        return;
      }
      out_.set_acked_seq(*high);
      send_ack();
      return;
    }
    // Events, a checkpoint, or both; a checkpoint alone is answered with where the store
    // stands (the signed head is kept).
    bool events = in_.events_size() > 0;
    uint64_t last = events ? in_.events(in_.events_size() - 1).seq() : 0;
    std::vector<v1::Event> evs;
    evs.reserve(static_cast<size_t>(in_.events_size()));
    for (auto& e : *in_.mutable_events()) evs.push_back(std::move(e));
    // What the node could not store: kept after the batch's events, without origin seq.
    if (in_.unstored_size() > 0)
      spdlog::warn("collector: node {} store {} could not store {} event(s) (told in-band)", st_.node, st_.store_id,
                   in_.unstored_size());
    for (auto& e : *in_.mutable_unstored()) evs.push_back(std::move(e));
    std::optional<v1::Checkpoint> cp;
    if (in_.has_checkpoint()) cp = std::move(*in_.mutable_checkpoint());
    in_.Clear();
    writer_.submit(st_.node, st_.store_id, std::move(evs), std::move(cp),
                   [this, events, last](core::Result<core::IngestResult> r) { on_stored(r, events, last); });
  }

  // On the writer thread, once the batch is stored (or not).
  void on_stored(const core::Result<core::IngestResult>& r, bool events, uint64_t last) {
    if (!r) {
      // UNAVAILABLE: the client keeps the batch and retries later.
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "collector store: " + r.error().message()));
      return;
    }
    if (r->conflicts) {
      spdlog::error("collector: {} (node {} store {}) resent {} event(s) that differ from the stored ones, first at "
                    "seq {}: two histories under one name; kept in table conflicts",
                    peer_, st_.node, st_.store_id, r->conflicts, r->first_conflict_seq);
      Finish(grpc::Status(
          grpc::StatusCode::ALREADY_EXISTS,
          fmt::format("events: seq {} of node '{}' store {} differs from the event the collector already holds under "
                      "that seq ({} such in this batch): another client pushed a different history under this name, "
                      "or this node's store was replaced; the collector keeps the first and records the conflict",
                      r->first_conflict_seq, st_.node, st_.store_id, r->conflicts)));
      return;
    }
    if (events) {
      st_.last_seq = last;
      out_.set_acked_seq(last);
    } else {
      auto high = store_.origin_high(st_.node, st_.store_id);
      if (!high) {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "collector store: " + high.error().message()));
        return;
      }
      out_.set_acked_seq(*high);
    }
    out_.set_checkpoint_seq(r->checkpoint_seq);
    send_ack();
  }

  core::EventStore& store_;
  core::CollectorWriter& writer_;
  const core::CollectorLimits& limits_;
  const std::atomic<bool>& stopping_;
  std::string peer_;
  std::vector<std::string> cert_names_;
  core::StreamState st_;
  uint64_t messages_ = 0;
  grpc::ByteBuffer raw_in_, raw_out_;
  v1::EventBatch in_;
  v1::Ack out_;
};

class AuditSinkService final
    : public v1::AuditSink::WithRawCallbackMethod_Push<v1::AuditSink::WithCallbackMethod_Checkpoints<v1::AuditSink::Service>> {
 public:
  AuditSinkService(core::EventStore& store, core::CollectorWriter& writer, core::CollectorLimits limits, bool mtls)
      : store_(store), writer_(writer), limits_(limits), mtls_(mtls) {}
  // With mTLS, the names (CN and SANs) the client's certificate speaks for; empty without.
  std::vector<std::string> cert_names(grpc::CallbackServerContext* ctx) const {
    std::vector<std::string> names;
    if (mtls_) {
      auto auth = ctx->auth_context();
      for (const char* prop : {GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME})
        for (const auto& v : auth->FindPropertyValues(prop)) names.emplace_back(v.data(), v.size());
      // The handshake required a verified certificate; one without any name gets nowhere.
      if (names.empty()) names.push_back("(no name in the certificate)");
    }
    return names;
  }

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Push(grpc::CallbackServerContext* ctx) override {
    return new PushReactor(store_, writer_, limits_, stopping, ctx->peer(), cert_names(ctx));
  }

  // What the collector keeps to anchor a node's store: `agentcage audit verify --against`.
  grpc::ServerUnaryReactor* Checkpoints(grpc::CallbackServerContext* ctx, const v1::CheckpointsRequest* req,
                                        v1::CheckpointsResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    auto names = cert_names(ctx);
    if (req->node().empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node: empty: name the node to check"));
      return reactor;
    }
    if (!names.empty() && std::find(names.begin(), names.end(), req->node()) == names.end()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                   fmt::format("node: '{}' is not a name in the client certificate", req->node())));
      return reactor;
    }
    auto cps = store_.checkpoints(req->node(), req->store_id(), std::min<uint32_t>(req->limit() ? req->limit() : 1000, 10000));
    if (!cps) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "collector store: " + cps.error().message()));
      return reactor;
    }
    for (auto& c : *cps) *resp->add_checkpoints() = std::move(c);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  std::atomic<bool> stopping{false};  // set once by shutdown(); read by every reactor

 private:
  core::EventStore& store_;
  core::CollectorWriter& writer_;
  core::CollectorLimits limits_;
  bool mtls_;
};

}  // namespace

namespace {
Result<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const AuditTransportOptions& o);
}  // namespace

Result<std::unique_ptr<core::AuditConnector>> make_audit_connector(const AuditTransportOptions& o) {
  auto creds = channel_credentials(o);
  if (!creds) return std::unexpected(creds.error());
  return std::unique_ptr<core::AuditConnector>(new GrpcConnector(o.endpoint, std::move(*creds), o.server_name));
}

Result<std::vector<v1::Checkpoint>> fetch_checkpoints(const AuditTransportOptions& o, const std::string& node,
                                                      const std::string& store_id, std::chrono::seconds timeout) {
  auto creds = channel_credentials(o);
  if (!creds) return std::unexpected(creds.error());
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  if (!o.server_name.empty()) args.SetSslTargetNameOverride(o.server_name);
  auto stub = v1::AuditSink::NewStub(grpc::CreateCustomChannel(o.endpoint, *creds, args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  ctx.set_wait_for_ready(true);  // a collector that is starting up: wait, up to the deadline
  v1::CheckpointsRequest req;
  req.set_node(node);
  req.set_store_id(store_id);
  v1::CheckpointsResponse resp;
  grpc::Status st = stub->Checkpoints(&ctx, req, &resp);
  if (!st.ok())
    return core::error(fmt::format("Checkpoints from {}: {}: {}", o.endpoint, code_name(st.error_code()),
                                   st.error_message()),
                       "check --against and the TLS options; the collector must be this version or newer");
  return std::vector<v1::Checkpoint>(resp.checkpoints().begin(), resp.checkpoints().end());
}

namespace {
Result<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const AuditTransportOptions& o) {
  if (o.endpoint.empty()) return core::error("audit endpoint: empty", "pass HOST:PORT");
  if (o.endpoint.find(':') == std::string::npos)
    return core::error(fmt::format("audit endpoint '{}': no port", o.endpoint), "pass HOST:PORT");
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.insecure) {
    if (!o.ca_file.empty() || !o.cert_file.empty() || !o.key_file.empty())
      return core::error("audit endpoint: plaintext was asked for together with TLS files",
                         "drop --insecure to use TLS, or drop the certificate options");
    creds = grpc::InsecureChannelCredentials();
  } else {
    if (o.cert_file.empty() != o.key_file.empty())
      return core::error("audit endpoint: mTLS needs both a certificate and its key");
    grpc::SslCredentialsOptions ssl;
    if (!o.ca_file.empty()) {
      auto ca = read_pem(o.ca_file, "CA certificates");
      if (!ca) return std::unexpected(ca.error());
      ssl.pem_root_certs = *ca;
    }
    if (!o.cert_file.empty()) {
      auto cert = read_pem(o.cert_file, "client certificate");
      if (!cert) return std::unexpected(cert.error());
      auto key = read_pem(o.key_file, "client key");
      if (!key) return std::unexpected(key.error());
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  }
  return creds;
}
}  // namespace

struct CollectorServer::Impl {
  core::EventStore* store = nullptr;
  std::unique_ptr<core::CollectorWriter> writer;
  std::unique_ptr<AuditSinkService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool down = false;
};

CollectorServer::CollectorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CollectorServer::~CollectorServer() { shutdown(); }

int CollectorServer::port() const { return impl_->port; }

core::CollectorWriter::Stats CollectorServer::stats() const { return impl_->writer->stats(); }

void CollectorServer::shutdown(std::chrono::milliseconds grace) {
  if (impl_->down) return;
  impl_->down = true;
  impl_->service->stopping = true;
  // Streams waiting on the writer still get their callback: the writer runs until the
  // server has finished every call.
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  impl_->server->Wait();
  impl_->writer->stop();
}

Result<std::unique_ptr<CollectorServer>> CollectorServer::start(core::EventStore& store,
                                                                 const CollectorServerOptions& o) {
  if (!store.collector()) return core::error("collector: the store is not a collector store");
  if (o.listen.empty()) return core::error("collector --listen: empty", "pass ADDR:PORT, e.g. 0.0.0.0:7443");
  if (o.tls_client_ca.empty() && !o.accept_any_node)
    return core::error("collector: no client authentication: any client could push a history under any node's name",
                       "pass --tls-client-ca CA (each node then pushes only under a name of its certificate), or "
                       "--insecure-accept-any-node to accept unauthenticated nodes (only on a trusted network)");
  if (!o.tls_client_ca.empty() && o.accept_any_node)
    return core::error("collector: --insecure-accept-any-node and --tls-client-ca exclude each other");
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (o.insecure) {
    if (!o.tls_cert.empty() || !o.tls_key.empty() || !o.tls_client_ca.empty())
      return core::error("collector: plaintext was asked for together with TLS files",
                         "drop --insecure to use TLS, or drop the certificate options");
    creds = grpc::InsecureServerCredentials();
  } else {
    if (o.tls_cert.empty() || o.tls_key.empty())
      return core::error("collector: TLS needs --tls-cert and --tls-key",
                         "or pass --insecure to accept plaintext (only on a trusted network)");
    auto cert = read_pem(o.tls_cert, "server certificate");
    if (!cert) return std::unexpected(cert.error());
    auto key = read_pem(o.tls_key, "server key");
    if (!key) return std::unexpected(key.error());
    grpc::SslServerCredentialsOptions ssl(o.tls_client_ca.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    if (!o.tls_client_ca.empty()) {
      auto ca = read_pem(o.tls_client_ca, "client CA certificates");
      if (!ca) return std::unexpected(ca.error());
      ssl.pem_root_certs = *ca;
    }
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
  }

  auto impl = std::make_unique<Impl>();
  impl->store = &store;
  impl->writer = std::make_unique<core::CollectorWriter>(store);
  impl->service = std::make_unique<AuditSinkService>(store, *impl->writer, o.limits, !o.tls_client_ca.empty());
  grpc::ServerBuilder b;
  b.AddListeningPort(o.listen, creds, &impl->port);
  b.RegisterService(impl->service.get());
  b.SetMaxReceiveMessageSize(kMaxMessageBytes);
  b.SetMaxSendMessageSize(kMaxMessageBytes);
  b.experimental().SetInterceptorCreators(grpcapi::status_interceptors());
  // Accept the clients' keepalive pings (every 20 s) without calling them abusive.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  impl->server = b.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    impl->writer->stop();
    return core::error(fmt::format("collector: cannot listen on {}", o.listen),
                       "check the address (ADDR:PORT) and that the port is free");
  }
  return std::unique_ptr<CollectorServer>(new CollectorServer(std::move(impl)));
}

}  // namespace agentcage::rpc
