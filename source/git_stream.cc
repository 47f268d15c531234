#include "source/git_stream.h"

#include <fcntl.h>
#include <git2.h>
#include <git2/sys/stream.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace hyper::controller {
namespace {

std::atomic<int64_t> g_timeoutMs{0};

// A C-layout struct: libgit2 hands back the git_stream pointer, which is the first member. The
// first four members are laid out as libgit2's own git_socket_stream (parent, host, port, socket):
// its ssh transport takes the socket stream it opened, casts it to that and gives the descriptor
// to libssh2, so a different order would hand libssh2 a pointer's bits as a descriptor.
struct TimedStream {
  git_stream parent;
  char* host;
  char* port;
  int fd;
  int64_t timeoutMs;  // fixed when the stream is created
};

std::string showDuration(int64_t ms) {
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

// --- The idle watchdog, for streams that libssh2 reads itself ---------------------------------
//
// An ssh stream's descriptor goes to libssh2, which reads and writes it directly and waits in
// poll() without a limit: SO_RCVTIMEO does not help, and this stream's read() is never called.
// So every connected stream is watched from one thread: when the kernel's TCP counters say that
// nothing was received and nothing was sent for the timeout (TCP_INFO tcpi_last_data_recv and
// tcpi_last_data_sent), the watchdog shuts the socket down. libssh2's wait then ends, the fetch
// fails, and takeGitIdleTimeout() tells the thread that opened the stream why. Streams that go
// through read()/write() (http, https) time out by themselves and leave the watch on first use.
struct Watched {
  std::string where;
  int64_t timeoutMs = 0;
  int64_t connectedAtMs = 0;
  std::thread::id opener;
};

struct WatchState {
  std::mutex mu;
  std::map<int, Watched> watched;               // fd -> stream
  std::map<std::thread::id, std::string> idle;  // opener -> why its stream was shut down
  bool running = false;                         // the watchdog thread was started
};

// Never destroyed: the detached watchdog may still run while statics are torn down at exit.
WatchState& watchState() {
  static auto* state = new WatchState;
  return *state;
}

int64_t nowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// Idle for `ms` in both directions, by the kernel's account; false when it cannot tell.
bool idleFor(int fd, int64_t ms) {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) {
    return false;
  }
  return info.tcpi_last_data_recv >= ms && info.tcpi_last_data_sent >= ms;
}

void watchdogLoop() {
  WatchState& st = watchState();
  for (;;) {
    int64_t sleepMs = 1000;
    {
      std::lock_guard<std::mutex> lock(st.mu);
      const int64_t now = nowMs();
      for (auto it = st.watched.begin(); it != st.watched.end();) {
        const Watched& w = it->second;
        sleepMs = std::min(sleepMs, std::max<int64_t>(w.timeoutMs / 4, 20));
        if (now - w.connectedAtMs >= w.timeoutMs && idleFor(it->first, w.timeoutMs)) {
          shutdown(it->first, SHUT_RDWR);  // wakes libssh2; the descriptor stays its owner's
          st.idle[w.opener] = "no data from " + w.where + " for " + showDuration(w.timeoutMs) +
                              " (network timeout)";
          it = st.watched.erase(it);
        } else {
          ++it;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(sleepMs));
  }
}

void watch(int fd, const TimedStream* s, const std::string& where) {
  WatchState& st = watchState();
  std::lock_guard<std::mutex> lock(st.mu);
  st.watched[fd] = Watched{where, s->timeoutMs, nowMs(), std::this_thread::get_id()};
  if (!st.running) {
    st.running = true;
    std::thread(watchdogLoop).detach();  // process-wide, like libgit2's stream registry
  }
}

void unwatch(int fd) {
  WatchState& st = watchState();
  std::lock_guard<std::mutex> lock(st.mu);
  st.watched.erase(fd);
}

TimedStream* self(git_stream* s) { return reinterpret_cast<TimedStream*>(s); }

std::string where(const TimedStream* s) { return std::string(s->host) + ":" + s->port; }

int fail(const std::string& message) {
  git_error_set_str(GIT_ERROR_NET, message.c_str());
  return -1;
}

// Connects one address with the deadline; 0, or an errno value (ETIMEDOUT for the deadline).
int connectOne(const addrinfo* ai, int64_t deadline, int* out) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  if (fd < 0) {
    return errno;
  }
  int err = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      err = 0;
      for (;;) {
        int64_t left = deadline - nowMs();
        if (left <= 0) {
          err = ETIMEDOUT;
          break;
        }
        pollfd p{fd, POLLOUT, 0};
        int n = poll(&p, 1, static_cast<int>(left));
        if (n < 0 && errno == EINTR) {
          continue;
        }
        if (n < 0) {
          err = errno;
          break;
        }
        if (n == 0) {
          err = ETIMEDOUT;
          break;
        }
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
          err = errno;
        }
        break;
      }
    }
  }
  if (err != 0) {
    close(fd);
    return err;
  }
  *out = fd;
  return 0;
}

int streamConnect(git_stream* stream) {
  TimedStream* s = self(stream);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int gai = getaddrinfo(s->host, s->port, &hints, &found);
  if (gai != 0) {
    return fail("cannot resolve " + std::string(s->host) + ": " + gai_strerror(gai));
  }
  const int64_t deadline = nowMs() + s->timeoutMs;
  int err = ECONNREFUSED;
  int fd = -1;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    err = connectOne(ai, deadline, &fd);
    if (err == 0 || err == ETIMEDOUT) {
      break;
    }
  }
  freeaddrinfo(found);
  if (err == ETIMEDOUT) {
    return fail("connect to " + where(s) + " timed out after " + showDuration(s->timeoutMs));
  }
  if (err != 0) {
    return fail("connect to " + where(s) + ": " + std::strerror(err));
  }
  // Blocking from here on, with a timeout on each read and write.
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{};
  tv.tv_sec = s->timeoutMs / 1000;
  tv.tv_usec = (s->timeoutMs % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  s->fd = fd;
  watch(fd, s, where(s));
  return 0;
}

ssize_t streamRead(git_stream* stream, void* data, size_t len) {
  TimedStream* s = self(stream);
  unwatch(s->fd);  // read through here: SO_RCVTIMEO times it out
  ssize_t n;
  do {
    n = recv(s->fd, data, len, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return fail("no data from " + where(s) + " for " + showDuration(s->timeoutMs) +
                  " (network timeout)");
    }
    return fail("read from " + where(s) + ": " + std::strerror(errno));
  }
  return n;
}

ssize_t streamWrite(git_stream* stream, const char* data, size_t len, int /*flags*/) {
  TimedStream* s = self(stream);
  unwatch(s->fd);
  ssize_t n;
  do {
    n = send(s->fd, data, len, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return fail("sending to " + where(s) + " stalled for " + showDuration(s->timeoutMs) +
                  " (network timeout)");
    }
    return fail("write to " + where(s) + ": " + std::strerror(errno));
  }
  return n;
}

int streamClose(git_stream* stream) {
  TimedStream* s = self(stream);
  if (s->fd >= 0) {
    unwatch(s->fd);  // before close: the number may be reused at once
    close(s->fd);
    s->fd = -1;
  }
  return 0;
}

void streamFree(git_stream* stream) {
  TimedStream* s = self(stream);
  streamClose(stream);
  std::free(s->host);
  std::free(s->port);
  std::free(s);
}

int streamInit(git_stream** out, const char* host, const char* port) {
  auto* s = static_cast<TimedStream*>(std::calloc(1, sizeof(TimedStream)));
  if (s == nullptr) {
    return fail("out of memory");
  }
  s->parent.version = GIT_STREAM_VERSION;
  s->parent.connect = streamConnect;
  s->parent.read = streamRead;
  s->parent.write = streamWrite;
  s->parent.close = streamClose;
  s->parent.free = streamFree;
  s->fd = -1;
  s->host = strdup(host);
  s->port = strdup(port);
  s->timeoutMs = g_timeoutMs.load();
  *out = &s->parent;
  return 0;
}

}  // namespace

Status installGitNetworkTimeout(std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) {
    return Status::error("git network timeout must be positive");
  }
  g_timeoutMs.store(timeout.count());
  static std::once_flag once;
  static int rc = 0;
  std::call_once(once, [] {
    git_libgit2_init();  // the registry lives in libgit2's global state
    git_stream_registration reg{};
    reg.version = GIT_STREAM_VERSION;
    reg.init = streamInit;
    rc = git_stream_register(GIT_STREAM_STANDARD, &reg);
  });
  if (rc != 0) {
    const git_error* e = git_error_last();
    return Status::error(std::string("cannot register libgit2's socket stream <- ") +
                         (e != nullptr ? e->message : "unknown error"));
  }
  return Status::ok();
}

std::chrono::milliseconds gitNetworkTimeout() { return std::chrono::milliseconds(g_timeoutMs); }

std::string takeGitIdleTimeout() {
  WatchState& st = watchState();
  std::lock_guard<std::mutex> lock(st.mu);
  auto it = st.idle.find(std::this_thread::get_id());
  if (it == st.idle.end()) {
    return "";
  }
  std::string why = std::move(it->second);
  st.idle.erase(it);
  return why;
}

}  // namespace hyper::controller
