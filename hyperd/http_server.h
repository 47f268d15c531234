#pragma once

#include <httplib.h>

#include <atomic>
#include <memory>

#include "hyperd/http_limits.h"

namespace hyper::controller {

// cpp-httplib's server with every connection bounded in time and bytes, and every socket
// close-on-exec. cpp-httplib 0.11.4 (Debian 12) reads a chunked body, a body without
// Content-Length and a gzip or br body whole into memory before any handler or its own
// payload_max_length check can refuse it, has no deadline for a request as a whole, and accepts
// without SOCK_CLOEXEC. This class serves each accepted connection itself (the library's
// process_request on a stream of ours): the stream enforces the request deadline and a byte
// budget, and admitBody() decides in a pre-routing handler, before the body is read, whether a
// body may be read at all.
//
// Threads: a fixed pool of longRequests + reserveThreads; a connection holds one thread from
// accept to close.
class HttpServer : public httplib::Server {
 public:
  explicit HttpServer(HttpLimits limits = {});
  ~HttpServer() override;

  const HttpLimits& limits() const { return limits_; }

  // For a pre-routing handler. Decides from the headers alone whether the request's body may be
  // read: at most `cap` bytes, framed by one Content-Length (no Transfer-Encoding: chunked, no
  // body that runs to end-of-stream) and not compressed (Content-Encoding absent or identity).
  // Returns true when it may; otherwise fills `res` with the refusal (411, 413, 415 or 400 and
  // a message saying what was expected), marks the connection to close after the answer, and
  // returns false. A request that carries no body (GET, or Content-Length: 0) passes.
  bool admitBody(const httplib::Request& req, httplib::Response& res, size_t cap) const;

  // Marks the current connection to close after this answer (any handler on this server).
  static void closeAfterResponse();

  // A slot for a request that holds its thread for long (SSE, a wait). Null when longRequests
  // are already held: the caller answers 503. The slot is released when the last copy goes.
  std::shared_ptr<void> holdLongRequest();
  size_t longRequestsHeld() const { return longHeld_->load(); }

 private:
  bool process_and_close_socket(socket_t sock) override;

  HttpLimits limits_;
  std::shared_ptr<std::atomic<size_t>> longHeld_;
};

}  // namespace hyper::controller
