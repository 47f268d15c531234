#pragma once

#include <chrono>
#include <cstddef>

namespace hyper::controller {

// What one HTTP client may take from hyperd's API server. The defaults hold for a loopback API
// that serves hyperctl, status pages and push webhooks; none of them is met by a real client.
struct HttpLimits {
  // From the first byte of a request to the end of its body: a client that sends its headers a
  // byte at a time (slow loris) is cut off here, whatever its pace.
  std::chrono::milliseconds requestTimeout{10000};
  // Request line and headers together; an endless header block is cut off here.
  size_t headerBytes = 64 * 1024;
  // An idle keep-alive connection holds a thread: it is closed after this long, and after
  // keepAliveRequests requests.
  std::chrono::milliseconds keepAliveIdle{2000};
  size_t keepAliveRequests = 100;
  // Requests that hold their thread for long (an SSE follow, a reconcile wait) at once; over it,
  // 503. The pool has longRequests + reserveThreads threads, so long requests never take the
  // threads that short ones (the webhook, /healthz) need.
  size_t longRequests = 16;
  size_t reserveThreads = 8;
  // After a refused request whose body was not read, the connection is half-closed and what the
  // client still sends is read and dropped for at most this long, so that it sees the answer
  // rather than a reset; then it is closed.
  std::chrono::milliseconds lingerAfterRefusal{2000};
};

}  // namespace hyper::controller
