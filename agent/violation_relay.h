// SPDX-License-Identifier: Apache-2.0
// `run` through agentcaged shows the run's violations and event losses on stderr, as an
// in-process run shows its own: the daemon's record of the sandbox, replayed from its
// store (so nothing from before the subscription is missed) and then live, until the
// sandbox's closing record.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agentcage/v1/control.grpc.pb.h"

namespace agentcage::cli {

class ViolationRelay {
 public:
  using Print = std::function<void(const v1::Event&)>;
  ViolationRelay(std::shared_ptr<grpc::Channel> ch, const std::string& sandbox_id, Print print);
  ~ViolationRelay() { finish(std::chrono::milliseconds(0)); }
  // After CloseSandbox: waits (at most `grace`) for the closing record and what the
  // daemon's reader still had of the sandbox, then ends the stream. A daemon that is gone
  // does not hold the exit up.
  void finish(std::chrono::milliseconds grace);

 private:
  void loop();

  std::unique_ptr<v1::Events::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader_;
  Print print_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false, ended_ = false, finished_ = false;
  std::thread thread_;
};

}  // namespace agentcage::cli
