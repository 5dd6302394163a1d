// SPDX-License-Identifier: Apache-2.0
// Control and Events services: thin adapters from gRPC to the daemon core. Every call
// first resolves its caller from the kernel's credentials (PeerTable), validates its
// request, and only then touches the core.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>

#include "agentcage/v1/control.grpc.pb.h"
#include "core/sandbox/daemon.h"
#include "grpc/uds_server.h"

namespace agentcage::grpcapi {

// Request limits: anything larger is INVALID_ARGUMENT, not work for the daemon.
inline constexpr size_t kMaxArgv = 4096;
inline constexpr size_t kMaxString = 4096;
inline constexpr int kMaxFilterIds = 256;
// ProcessTree answers stay well under a client's default 4 MiB receive limit.
inline constexpr size_t kMaxTreeProcesses = 8192;

bool valid_sandbox_id(const std::string& id);
// Validates an EventFilter; empty string when fine, else what is wrong.
std::string validate_filter(const v1::EventFilter& f);
// Whether ev matches f's sandbox/kind/violation selection (not permissions).
bool filter_matches(const v1::EventFilter& f, const v1::Event& ev);
// The kind name of an event as used in filters: exec | fork | exit | file | net | ...
std::string kind_name(const v1::Event& ev);

class ControlService final : public v1::Control::CallbackService {
 public:
  ControlService(core::Daemon& d, PeerTable& peers) : d_(d), peers_(peers) {}

  grpc::ServerUnaryReactor* CreateSandbox(grpc::CallbackServerContext*, const v1::CreateSandboxRequest*,
                                          v1::Sandbox*) override;
  grpc::ServerUnaryReactor* PlaceProcess(grpc::CallbackServerContext*, const v1::PlaceProcessRequest*,
                                         v1::PlaceProcessResponse*) override;
  grpc::ServerUnaryReactor* CloseSandbox(grpc::CallbackServerContext*, const v1::CloseSandboxRequest*,
                                         v1::CloseSandboxResponse*) override;
  grpc::ServerUnaryReactor* ListSandboxes(grpc::CallbackServerContext*, const v1::ListSandboxesRequest*,
                                          v1::ListSandboxesResponse*) override;
  grpc::ServerUnaryReactor* GetSandbox(grpc::CallbackServerContext*, const v1::GetSandboxRequest*,
                                       v1::Sandbox*) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext*, const v1::StatusRequest*,
                                   v1::StatusResponse*) override;
  grpc::ServerUnaryReactor* ReloadProfiles(grpc::CallbackServerContext*, const v1::ReloadProfilesRequest*,
                                           v1::ReloadProfilesResponse*) override;

 private:
  core::Daemon& d_;
  PeerTable& peers_;
};

// Closes unprivileged Subscribe streams that read nothing for too long and gives the
// memory of ended streams back to the system (services.cc).
class StallWatch;

class EventsService final : public v1::Events::CallbackService {
 public:
  EventsService(core::Daemon& d, PeerTable& peers);
  ~EventsService() override;

  grpc::ServerWriteReactor<v1::Event>* Subscribe(grpc::CallbackServerContext*, const v1::SubscribeRequest*) override;
  grpc::ServerWriteReactor<v1::Event>* Query(grpc::CallbackServerContext*, const v1::QueryRequest*) override;
  grpc::ServerUnaryReactor* ProcessTree(grpc::CallbackServerContext*, const v1::ProcessTreeRequest*,
                                        v1::ProcessTreeResponse*) override;

 private:
  core::Daemon& d_;
  PeerTable& peers_;
  // Live Subscribe streams per non-root uid (DaemonOptions::max_subscribers_per_user).
  std::shared_ptr<std::mutex> subs_mu_ = std::make_shared<std::mutex>();
  std::shared_ptr<std::map<uid_t, size_t>> subs_per_uid_ = std::make_shared<std::map<uid_t, size_t>>();
  std::shared_ptr<StallWatch> stall_;
};

}  // namespace agentcage::grpcapi
