// hyper-broker-cli: asks the host command broker to run a command and relays its output and exit
// code. `hyper-broker-cli [--socket PATH] [--timeout S] CMD ARGS...`
//
// It runs once per make, so it is kept small and quick to start (see broker/client_wire.h and the
// link options in CMakeLists.txt): no JSON library, no iostreams.
#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "broker/client.h"
#include "broker/client_wire.h"
#include "broker/request.h"
#include "broker/runner.h"

extern char** environ;

namespace {

constexpr const char* kDefaultSocket = "/run/hyper/broker.sock";

int usage(const char* error) {
  if (error != nullptr) {
    std::fprintf(stderr, "hyper-broker-cli: %s\n", error);
  }
  std::fprintf(stderr,
               "usage: hyper-broker-cli [--socket PATH] [--timeout SECONDS] COMMAND [ARGS...]\n"
               "  the socket defaults to $HYPER_BROKER_SOCKET, then %s\n",
               kDefaultSocket);
  return error != nullptr ? 1 : 0;
}

bool writeAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

// Names the request in the broker's log; unique enough, not a secret.
std::string requestId() {
  unsigned char bytes[8] = {};
  if (::getrandom(bytes, sizeof bytes, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof bytes)) {
    struct timespec now = {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long mix = static_cast<unsigned long long>(now.tv_nsec) ^
                             (static_cast<unsigned long long>(::getpid()) << 32);
    std::memcpy(bytes, &mix, sizeof bytes);
  }
  char hex[17];
  for (int i = 0; i < 8; ++i) {
    std::snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
  }
  return hex;
}

// The options and the command with its arguments into `socket` and `req`; an exit code when
// main should return it (usage or a usage error).
std::optional<int> parseCommandLine(int argc, char** argv, std::string& socket,
                                    hyper::broker::RunRequest& req) {
  int i = 1;
  // Options end at the first word that is not one of ours: that is the command, and everything
  // after it is its own (make -j4 -C dir ...).
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const std::string& name, std::string& out) -> bool {
      if (a == name) {
        if (i + 1 >= argc) {
          return false;
        }
        out = argv[++i];
        return true;
      }
      out = a.substr(name.size() + 1);
      return true;
    };
    if (a == "--help" || a == "-h") {
      return usage(nullptr);
    } else if (a == "--socket" || a.rfind("--socket=", 0) == 0) {
      if (!value("--socket", socket) || socket.empty()) {
        return usage("--socket needs a path");
      }
    } else if (a == "--timeout" || a.rfind("--timeout=", 0) == 0) {
      std::string text;
      if (!value("--timeout", text)) {
        return usage("--timeout needs a number of seconds");
      }
      char* end = nullptr;
      long seconds = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || seconds < 1 || seconds > 1000000) {
        return usage(
            ("--timeout: expected whole seconds from 1 to 1000000, got \"" + text + "\"").c_str());
      }
      req.timeoutSec = static_cast<int>(seconds);
    } else if (a == "--") {
      ++i;
      break;
    } else if (a.rfind("--", 0) == 0) {
      return usage(("unknown option " + a).c_str());
    } else {
      break;
    }
  }
  if (i >= argc) {
    return usage("no command given");
  }
  req.command = argv[i++];
  for (; i < argc; ++i) {
    req.args.push_back(argv[i]);
  }
  return std::nullopt;
}

// The broker's frames to our stdout and stderr until its exit frame; the exit code. A failed
// request send (`sent` false, `sendErr` its errno) is reported only if nothing came back.
int relayFrames(int fd, const hyper::broker::RunRequest& req, bool sent, int sendErr,
                const std::string& socket) {
  std::string line;
  std::string buffer;
  bool rejected = false;
  while (hyper::broker::readFrameLine(fd, buffer, line)) {
    auto frame = hyper::broker::parseClientFrame(line);
    if (!frame.isOk()) {
      std::fprintf(stderr, "hyper-broker-cli: invalid response from the broker: %.80s\n",
                   line.c_str());
      return 1;
    }
    const std::string& type = frame->type;
    if (type == "stdout" || type == "stderr") {
      auto data = hyper::broker::clientFrameData(*frame);
      if (!data.isOk()) {
        std::fprintf(stderr, "hyper-broker-cli: invalid response from the broker: %s\n",
                     data.status().message().c_str());
        return 1;
      }
      // A closed stdout (| head) ends us like it would end the command; the broker then sees
      // the hang-up and kills the build.
      if (!writeAll(type == "stdout" ? STDOUT_FILENO : STDERR_FILENO, *data)) {
        return 1;
      }
    } else if (type == "error") {
      rejected = true;
      std::fprintf(stderr, "hyper-broker-cli: rejected: %s\n",
                   frame->message ? frame->message->c_str() : "(no reason given)");
    } else if (type == "queued") {
      // Waiting for a slot of the rule's concurrency limit; the run starts by itself.
    } else if (type == "exit") {
      if (!frame->code) {
        std::fprintf(stderr, "hyper-broker-cli: invalid response from the broker: %.80s\n",
                     line.c_str());
        return 1;
      }
      if (frame->timedOut) {
        std::fprintf(stderr, "hyper-broker-cli: %s timed out; the broker killed it\n",
                     req.command.c_str());
        return 124;
      }
      return rejected ? 1 : static_cast<int>(*frame->code);
    } else {
      // Unknown frame types are skipped: a newer broker may send more.
    }
  }
  if (!sent) {
    std::fprintf(stderr, "hyper-broker-cli: send the request to the broker at %s: %s\n",
                 socket.c_str(), std::strerror(sendErr));
    return 1;
  }
  std::fprintf(stderr,
               "hyper-broker-cli: invalid response from the broker: the connection closed "
               "before the exit status\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket;
  if (const char* env = std::getenv("HYPER_BROKER_SOCKET"); env != nullptr && *env != '\0') {
    socket = env;
  } else {
    socket = kDefaultSocket;
  }
  hyper::broker::RunRequest req;
  if (std::optional<int> exit = parseCommandLine(argc, argv, socket, req)) {
    return *exit;
  }
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof cwd) == nullptr) {
    std::fprintf(stderr, "hyper-broker-cli: getcwd: %s\n", std::strerror(errno));
    return 1;
  }
  req.cwd = cwd;
  for (char** e = environ; *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr) {
      req.env[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
    }
  }
  req.requestId = requestId();

  signal(SIGPIPE, SIG_IGN);
  auto fd = hyper::broker::connectBroker(socket);
  if (!fd.isOk()) {
    std::fprintf(stderr, "hyper-broker-cli: %s\n", fd.status().message().c_str());
    return 1;
  }
  std::string line = hyper::broker::encodeRunRequest(req) + "\n";
  // A broker that refuses early may close before reading all of the request: what it sent
  // (an error frame) is still read below, and the send error reported only if there is nothing.
  bool sent = hyper::broker::sendAll(*fd, line);
  int sendErr = errno;
  return relayFrames(*fd, req, sent, sendErr, socket);
}
