#pragma once

#include <chrono>
#include <string>

#include "base/status.h"

namespace hyper::controller {

// libgit2 1.5 has no network timeout option (GIT_OPT_SET_SERVER_TIMEOUT came in 1.7): a remote
// that accepts a connection and then says nothing, or a host that drops SYNs, blocks a fetch until
// the operating system gives up (minutes), and with it hyperd's loop. This registers libgit2's
// standard socket stream (git_stream_register, GIT_STREAM_STANDARD) with one that connects with a
// deadline and puts a timeout on every read and write. http:// uses it directly and https:// wraps
// it in TLS (libgit2's OpenSSL stream opens its socket through the same registry), so both time
// out. ssh:// connects through it too (with the deadline), but then libssh2 reads the socket
// itself and waits without a limit; for those streams a watchdog thread shuts the socket down
// once the kernel reports no data in either direction for the timeout (TCP_INFO), and
// takeGitIdleTimeout() says so to the thread whose operation then failed.
//
// Process-wide, as libgit2's registry is. Calling it again changes the timeout for connections
// opened afterwards. `timeout` must be positive.
Status installGitNetworkTimeout(std::chrono::milliseconds timeout);

// The timeout in force (0 when installGitNetworkTimeout was never called).
std::chrono::milliseconds gitNetworkTimeout();

// Why the watchdog shut down a stream this thread opened ("no data from HOST:PORT for 30s
// (network timeout)"), once; "" when it did not. libgit2's own message for the failure that
// follows names only the symptom (a lost banner, a closed socket).
std::string takeGitIdleTimeout();

}  // namespace hyper::controller
