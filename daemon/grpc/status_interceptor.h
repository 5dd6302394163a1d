// SPDX-License-Identifier: Apache-2.0
// Gives gRPC's two silent failures a status that says what failed.
//
// With the callback API, a request that does not parse as the method's message, and a
// handler that throws, both end the call as UNIMPLEMENTED with no text (the library
// substitutes an "unimplemented" reactor), so a client cannot tell a bad request from a
// missing method. This interceptor, on every server call, notes whether the request
// parsed (POST_RECV_MESSAGE hands it a null message when it did not) and rewrites that
// empty UNIMPLEMENTED status before it is sent: INVALID_ARGUMENT naming the method and
// the message it expected, or INTERNAL when the request parsed and the handler failed.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <vector>

namespace agentcage::grpcapi {

// For grpc::ServerBuilder::experimental().SetInterceptorCreators().
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> status_interceptors();

}  // namespace agentcage::grpcapi
