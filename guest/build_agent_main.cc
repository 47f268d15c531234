// hyper-build-agent: runs a build's steps inside a builder VM and reports over the builder's
// virtio-serial channel (guest/build_protocol.h). Static, so that any builder rootfs can run it.
// hyper's guest init starts it once the disks are mounted: `hyper-build-agent --channel
// /dev/vportNpM [--root /buildroot]`; tests run it on a socket pair with `--channel-fd N`.
//
// Each step is an argv (no shell), run in its own process group as the job's uid/gid with the
// job's environment only, stdin from /dev/null, stdout and stderr streamed in chunks. A step that
// fails ends the job; `cancel` from the host kills the running step's group. The result is sent
// unasked when the job ends.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "base/base64.h"
#include "guest/build_protocol.h"

namespace {

using hyper::guest::BuildJob;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHostLine = size_t{1} << 20;  // a job line

int channel = -1;
std::string root;  // --root: the steps run chrooted there ("" = the agent's own root)
std::string inbuf;
bool hostGone = false;  // read returned 0 (no host connected): look again later

void send(const std::string& line) {
  std::string out = line + "\n";
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(channel, out.data() + done, out.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{channel, POLLOUT, 0};
      ::poll(&p, 1, 1000);
    } else {
      return;  // the host is gone: the build goes on, its output is lost
    }
  }
}

// Reads what is there on the channel (the caller polled it); complete lines go to `lines`.
void readChannel(std::vector<std::string>& lines) {
  char chunk[4096];
  ssize_t n = ::read(channel, chunk, sizeof chunk);
  if (n <= 0) {
    hostGone = n == 0 || (errno != EINTR && errno != EAGAIN);
    return;
  }
  inbuf.append(chunk, static_cast<size_t>(n));
  for (size_t nl; (nl = inbuf.find('\n')) != std::string::npos;) {
    lines.push_back(inbuf.substr(0, nl));
    inbuf.erase(0, nl + 1);
  }
  if (inbuf.size() > kMaxHostLine) {
    inbuf.clear();  // not a line of the host's: dropped
  }
}

// The channel's events to poll for: none for a while after it said no host is there.
short channelEvents(Clock::time_point& quietUntil) {
  if (hostGone) {
    quietUntil = Clock::now() + std::chrono::milliseconds(500);
    hostGone = false;
  }
  return Clock::now() < quietUntil ? 0 : POLLIN;
}

BuildJob waitForJob() {
  Clock::time_point quiet{};
  while (true) {
    pollfd p{channel, channelEvents(quiet), 0};
    ::poll(&p, 1, 500);
    if ((p.revents & (POLLIN | POLLHUP)) == 0) {
      continue;
    }
    std::vector<std::string> lines;
    readChannel(lines);
    for (const auto& line : lines) {
      if (line.rfind("job ", 0) != 0) {
        continue;
      }
      std::string text;
      if (!hyper::decodeBase64(line.substr(4), text, kMaxHostLine)) {
        send("result error the job line is not base64");
        std::exit(1);
      }
      auto json = nlohmann::json::parse(text, nullptr, false);
      auto job = BuildJob::fromJson(json);
      if (!job.isOk()) {
        send("result error " + job.status().message());
        std::exit(1);
      }
      return *job;
    }
  }
}

// In the step's child, before its program runs: says why on its stderr and ends.
[[noreturn]] void die(const std::string& what) {
  std::string m = "hyper-build-agent: " + what + ": " + std::strerror(errno) + "\n";
  (void)!::write(2, m.data(), m.size());
  ::_exit(127);
}

[[noreturn]] void runChild(const BuildJob& job, const std::vector<std::string>& argv, int out,
                           int err) {
  ::setsid();
  int devnull = ::open("/dev/null", O_RDONLY);
  ::dup2(devnull, 0);
  ::dup2(out, 1);
  ::dup2(err, 2);
  ::signal(SIGPIPE, SIG_DFL);
  // The builder's root filesystem (a rootfs Build, overlaid by the guest's init): the steps see
  // its toolchain, with /build, /out, /tmp and /run/secrets bound in.
  if (!root.empty() && (::chroot(root.c_str()) != 0 || ::chdir("/") != 0)) {
    die("chroot " + root);
  }
  if (job.gid >= 0 && (::setgroups(0, nullptr) != 0 || ::setgid(job.gid) != 0)) {
    die("setgid " + std::to_string(job.gid));
  }
  if (job.uid >= 0 && ::setuid(job.uid) != 0) {
    die("setuid " + std::to_string(job.uid));
  }
  if (::chdir(job.workdir.c_str()) != 0) {
    die("chdir " + job.workdir);
  }
  std::vector<std::string> envText;
  for (const auto& [k, v] : job.env) {
    envText.push_back(k + "=" + v);
  }
  std::vector<char*> envp, args;
  for (auto& e : envText) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  // execvp searches the PATH of the environment it runs in: the job's.
  environ = envp.data();
  ::execvp(args[0], args.data());
  die("run " + argv[0]);
}

// Runs step `n`; its wait status, or -1 when it was cancelled.
int runStep(const BuildJob& job, int n, bool& cancelled) {
  int outPipe[2], errPipe[2];
  if (::pipe2(outPipe, O_CLOEXEC) != 0 || ::pipe2(errPipe, O_CLOEXEC) != 0) {
    send("result error pipe: " + std::string(std::strerror(errno)));
    std::exit(1);
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    runChild(job, job.steps[n], outPipe[1], errPipe[1]);
  }
  ::close(outPipe[1]);
  ::close(errPipe[1]);
  int fds[2] = {outPipe[0], errPipe[0]};
  bool open[2] = {true, true};
  int status = 0;
  bool exited = false;
  Clock::time_point quiet{};
  auto nextBeat = Clock::now() + hyper::guest::kAgentHeartbeat;
  while (open[0] || open[1] || !exited) {
    pollfd p[3] = {{open[0] ? fds[0] : -1, POLLIN, 0},
                   {open[1] ? fds[1] : -1, POLLIN, 0},
                   {channel, channelEvents(quiet), 0}};
    ::poll(p, 3, 200);
    for (int i = 0; i < 2; ++i) {
      if (open[i] && (p[i].revents & (POLLIN | POLLHUP)) != 0) {
        char chunk[hyper::guest::kOutputChunk];
        ssize_t got = ::read(fds[i], chunk, sizeof chunk);
        if (got > 0) {
          send(hyper::guest::outputLine(i == 1, n, std::string_view(chunk, got)));
        } else if (got == 0 || errno != EINTR) {
          open[i] = false;
        }
      }
    }
    if ((p[2].revents & (POLLIN | POLLHUP)) != 0) {
      std::vector<std::string> lines;
      readChannel(lines);
      for (const auto& line : lines) {
        if (line == "cancel" && !cancelled) {
          cancelled = true;
          ::kill(-pid, SIGKILL);
        }
      }
    }
    if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      // What the step left running (its group) goes with it, so its pipes end.
      ::kill(-pid, SIGKILL);
    }
    if (Clock::now() >= nextBeat) {
      send("alive");
      nextBeat = Clock::now() + hyper::guest::kAgentHeartbeat;
    }
  }
  ::close(fds[0]);
  ::close(fds[1]);
  return cancelled ? -1 : status;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--channel") {
      channel = ::open(argv[i + 1], O_RDWR | O_CLOEXEC);
    } else if (flag == "--channel-fd") {
      channel = std::atoi(argv[i + 1]);
    } else if (flag == "--root") {
      root = argv[i + 1];
    }
  }
  if (channel < 0) {
    std::cerr << "usage: hyper-build-agent --channel PATH | --channel-fd N [--root DIR]\n";
    return 2;
  }
  send(std::string("hello ") + hyper::guest::kAgentHello);
  BuildJob job = waitForJob();
  for (size_t n = 0; n < job.steps.size(); ++n) {
    send("step " + std::to_string(n) + " start");
    bool cancelled = false;
    int status = runStep(job, static_cast<int>(n), cancelled);
    if (cancelled) {
      send("step " + std::to_string(n) + " signal 9");
      send("result error cancelled");
      return 1;
    }
    if (WIFSIGNALED(status)) {
      send("step " + std::to_string(n) + " signal " + std::to_string(WTERMSIG(status)));
      send("result failed " + std::to_string(n) + " " + std::to_string(128 + WTERMSIG(status)));
      return 1;
    }
    const int code = WEXITSTATUS(status);
    send("step " + std::to_string(n) + " exit " + std::to_string(code));
    if (code != 0) {
      send("result failed " + std::to_string(n) + " " + std::to_string(code));
      return 1;
    }
  }
  send("result ok");
  return 0;
}
