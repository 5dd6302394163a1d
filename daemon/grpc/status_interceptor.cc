// SPDX-License-Identifier: Apache-2.0
#include "grpc/status_interceptor.h"

#include <google/protobuf/descriptor.h>
#include <spdlog/spdlog.h>

#include <string>

namespace agentcage::grpcapi {
namespace {

namespace gx = grpc::experimental;

// The request message a method takes, from the generated descriptors ("/pkg.Svc/Method").
std::string request_type(const std::string& method) {
  auto slash = method.rfind('/');
  if (method.size() < 2 || slash == std::string::npos || slash == 0) return {};
  auto* svc = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(method.substr(1, slash - 1));
  if (!svc) return {};
  auto* m = svc->FindMethodByName(method.substr(slash + 1));
  return m ? m->input_type()->full_name() : std::string();
}

class StatusInterceptor final : public gx::Interceptor {
 public:
  explicit StatusInterceptor(std::string method) : method_(std::move(method)) {}

  void Intercept(gx::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(gx::InterceptionHookPoints::POST_RECV_MESSAGE)) {
      received_ = true;
      if (m->GetRecvMessage() == nullptr) unparsed_ = true;
    }
    if (m->QueryInterceptionHookPoint(gx::InterceptionHookPoints::PRE_SEND_STATUS)) {
      auto st = m->GetSendStatus();
      // Only the library's own empty UNIMPLEMENTED is rewritten: a handler's statuses
      // always carry text.
      if (received_ && st.error_code() == grpc::StatusCode::UNIMPLEMENTED && st.error_message().empty()) {
        if (unparsed_) {
          auto type = request_type(method_);
          m->ModifySendStatus(grpc::Status(
              grpc::StatusCode::INVALID_ARGUMENT,
              "request: the message sent to " + method_ + " does not parse as " +
                  (type.empty() ? std::string("its request type") : type) +
                  " (a wire-format error, or a string field that is not UTF-8)"));
        } else {
          spdlog::error("{}: the handler failed without a status (an exception)", method_);
          m->ModifySendStatus(grpc::Status(grpc::StatusCode::INTERNAL,
                                           method_ + ": the daemon failed to handle this request (see its log)"));
        }
      }
    }
    m->Proceed();
  }

 private:
  std::string method_;
  bool received_ = false;
  bool unparsed_ = false;
};

class Factory final : public gx::ServerInterceptorFactoryInterface {
 public:
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override {
    return new StatusInterceptor(info->method());
  }
};

}  // namespace

std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> status_interceptors() {
  std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> v;
  v.push_back(std::make_unique<Factory>());
  return v;
}

}  // namespace agentcage::grpcapi
