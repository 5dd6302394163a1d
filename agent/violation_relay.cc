// SPDX-License-Identifier: Apache-2.0
#include "violation_relay.h"

namespace agentcage::cli {

ViolationRelay::ViolationRelay(std::shared_ptr<grpc::Channel> ch, const std::string& sandbox_id, Print print)
    : stub_(v1::Events::NewStub(ch)), print_(std::move(print)) {
  v1::SubscribeRequest req;
  req.mutable_filter()->add_sandbox_ids(sandbox_id);
  req.mutable_filter()->set_from_seq(1);  // the store's index on sandbox_id makes this a short replay
  // Only what is relayed (and the closing record): a busy command's file and exec events
  // would fill this stream's queue and turn into Loss lines on the user's terminal.
  // Losses always pass a filter.
  req.mutable_filter()->add_kinds("violation");
  req.mutable_filter()->add_kinds("sandbox");
  reader_ = stub_->Subscribe(&ctx_, req);
  thread_ = std::thread([this] { loop(); });
}

void ViolationRelay::loop() {
  v1::Event ev;
  while (reader_->Read(&ev)) {
    if (ev.has_violation() || ev.has_loss()) print_(ev);
    if (ev.has_sandbox() && (ev.sandbox().phase() == "closed" || ev.sandbox().phase() == "killed")) {
      std::lock_guard lk(mu_);
      closed_ = true;
      cv_.notify_all();
    }
  }
  std::lock_guard lk(mu_);
  ended_ = true;
  cv_.notify_all();
}

void ViolationRelay::finish(std::chrono::milliseconds grace) {
  if (finished_) return;
  finished_ = true;
  {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, grace, [&] { return closed_ || ended_; });
    // The closing record is written when the sandbox is closed; the kernel's last records
    // of it may still be in the daemon's reader (it polls every 50 ms).
    if (closed_ && !ended_) cv_.wait_for(lk, std::chrono::milliseconds(200), [&] { return ended_; });
  }
  ctx_.TryCancel();
  thread_.join();
  (void)reader_->Finish();
}

}  // namespace agentcage::cli
