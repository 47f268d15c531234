#include "broker/runner.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/fd.h"
#include "broker/output.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace hyper::broker {

namespace {

using Clock = std::chrono::steady_clock;

// What the child reports through the exec-status pipe when a step before exec fails.
struct ChildFailure {
  int step;
  int err;
};

const char* stepName(int step) {
  static const char* names[] = {"setpgid",
                                "dup2",
                                "close_range",
                                "setgroups",
                                "setgid",
                                "setuid",
                                "chdir",
                                "getcwd",
                                "cwd escaped the workspace",
                                "execve",
                                "move into the run's cgroup",
                                "prctl PR_SET_NO_NEW_PRIVS"};
  return step >= 0 && step < static_cast<int>(sizeof names / sizeof names[0]) ? names[step]
                                                                              : "start";
}

[[noreturn]] void childFail(int fd, int step, int err) {
  ChildFailure f{step, err};
  ssize_t ignored = ::write(fd, &f, sizeof f);
  (void)ignored;
  ::_exit(127);
}

bool underRoot(const char* path, const std::string& root) {
  size_t n = root.size();
  if (root == "/") {
    return true;
  }
  return std::strncmp(path, root.c_str(), n) == 0 && (path[n] == '\0' || path[n] == '/');
}

// In the clone(CLONE_VM) child: only system calls from here to execve, and nothing written but
// its own stack and errno.
[[noreturn]] void execChild(const RunSpec& spec, char* const* argv, char* const* envp, int devNull,
                            int outW, int errW, int statusW) {
  if (::setpgid(0, 0) != 0) {
    childFail(statusW, 0, errno);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  if (::dup2(devNull, STDIN_FILENO) < 0 || ::dup2(outW, STDOUT_FILENO) < 0 ||
      ::dup2(errW, STDERR_FILENO) < 0) {
    childFail(statusW, 1, errno);
  }
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    childFail(statusW, 2, errno);
  }
  for (int fd : spec.cgroupProcsFds) {
    // "0" is the writer itself: into the run's group while still root, before anything runs.
    if (::write(fd, "0", 1) != 1) {
      childFail(statusW, 10, errno);
    }
  }
  if (::syscall(SYS_setgroups, spec.groups.size(), spec.groups.data()) != 0) {
    childFail(statusW, 3, errno);
  }
  if (::syscall(SYS_setgid, spec.gid) != 0) {
    childFail(statusW, 4, errno);
  }
  if (::syscall(SYS_setuid, spec.uid) != 0) {
    childFail(statusW, 5, errno);
  }
  if (spec.noNewPrivs && ::syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL) != 0) {
    childFail(statusW, 11, errno);
  }
  // chdir as the user, so that its permissions apply; then check where we are, in case a
  // component of the validated path was swapped for a symlink since the daemon resolved it.
  if (::chdir(spec.cwd.c_str()) != 0) {
    childFail(statusW, 6, errno);
  }
  char where[PATH_MAX];
  if (::getcwd(where, sizeof where) == nullptr) {
    childFail(statusW, 7, errno);
  }
  if (!underRoot(where, spec.workspace)) {
    childFail(statusW, 8, EPERM);
  }
  if (spec.stopBeforeExec) {
    ::syscall(SYS_kill, ::syscall(SYS_getpid), SIGSTOP);
  }
  ::execve(spec.command.c_str(), argv, envp);
  childFail(statusW, 9, errno);
}

struct ChildArgs {
  const RunSpec* spec;
  char* const* argv;
  char* const* envp;
  int devNull, outW, errW, statusW;
};

int childMain(void* raw) {
  auto* a = static_cast<ChildArgs*>(raw);
  execChild(*a->spec, a->argv, a->envp, a->devNull, a->outW, a->errW, a->statusW);
}

int exitCodeOf(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return 1;
}

}  // namespace

bool sendAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
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

// Stays long (~260 lines): the CLONE_VM child shares this frame's stack, argv and pipes until it
// execs, so spawn, the wait for the exec and the streaming are kept in one frame on purpose.
Result<RunOutcome> runStreaming(const RunSpec& spec, int clientFd, int stopFd) {
  // The deadline counts from here, before the child exists: its time before execve is the run's.
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(spec.timeoutSec);
  std::string what = "run " + spec.command;
  auto fail = [&](const char* step) {
    return Status::error(what + " <- " + step + ": " + std::strerror(errno));
  };
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail("pipe2");
  }
  Fd outR(fds[0]), outW(fds[1]);
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail("pipe2");
  }
  Fd errR(fds[0]), errW(fds[1]);
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail("pipe2");
  }
  Fd statusR(fds[0]), statusW(fds[1]);
  Fd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (devNull.get() < 0) {
    return fail("open /dev/null");
  }

  // Everything the child needs is built before the clone.
  std::vector<char*> argv;
  for (const auto& a : spec.argv) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) {
    envp.push_back(const_cast<char*>(e.c_str()));
  }
  envp.push_back(nullptr);

  // clone(CLONE_VM), as posix_spawn does: no copy of the daemon's page tables and no
  // copy-on-write faults in the daemon afterwards, which is most of what a fork costs here. The
  // child shares our memory until it execs, so it only makes system calls and writes to its own
  // stack; credentials change through raw system calls, because glibc's setuid and friends would
  // apply the change to every thread of what they take for this process: the daemon's.
  // Unlike posix_spawn there is no CLONE_VFORK: a vfork parent sleeps until the child execs, and
  // a child its user stopped before execve would hold this thread (and the rule's slot) forever.
  // Instead this thread waits for the exec (the status pipe closing) under the run's deadline, and
  // keeps everything the child reads (spec, argv, envp, stack) alive until the child has exec'd
  // or is dead. While they share memory they also share errno; in that window this thread makes
  // no call whose errno it reads. No signal handler may run in the child before execve (it would
  // run on the daemon's memory): hyper-broker installs none (its signals are taken by sigwait in
  // one thread, SIGPIPE is ignored and reset to default in the child); keep it that way, or
  // reset every handled signal in the child as posix_spawn does.
  ChildArgs args{&spec,      argv.data(), envp.data(),  devNull.get(),
                 outW.get(), errW.get(),  statusW.get()};
  std::vector<char> stack(256 * 1024);
  void* stackTop = stack.data() + stack.size();
  pid_t pid = ::clone(childMain, stackTop, CLONE_VM | SIGCHLD, &args);
  if (pid < 0) {
    return fail("clone");
  }
  ::setpgid(pid, pid);  // also in the parent, so that killpg works whichever runs first
  outW.reset();
  errW.reset();
  statusW.reset();
  devNull.reset();

  // Until the exec: the child's failure report, or end-of-file when execve closed the pipe.
  RunOutcome early;
  ChildFailure failure{};
  size_t got = 0;
  bool execDone = false;
  while (!execDone) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      early.timedOut = true;
      break;
    }
    struct pollfd p[3] = {
        {statusR.get(), POLLIN, 0}, {clientFd, POLLIN | POLLRDHUP, 0}, {stopFd, POLLIN, 0}};
    int ready = ::poll(p, stopFd >= 0 ? 3 : 2,
                       static_cast<int>(std::min<long long>(left.count() + 1, 60000)));
    if (ready <= 0) {
      continue;  // timeout or EINTR: the deadline is checked above
    }
    if (p[0].revents != 0) {
      ssize_t n =
          ::read(statusR.get(), reinterpret_cast<char*>(&failure) + got, sizeof failure - got);
      if (n > 0) {
        got += static_cast<size_t>(n);
        execDone = got == sizeof failure;
      } else if (n == 0) {
        execDone = true;
      }
      continue;
    }
    if (p[1].revents != 0) {
      early.clientGone = true;
      break;
    }
    if (stopFd >= 0 && p[2].revents != 0) {
      early.stopped = true;
      break;
    }
  }
  if (!execDone) {
    // Stopped (or slow) before execve: SIGKILL reaches a stopped process too. Once it is reaped
    // nothing shares our memory any more.
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    early.exitCode = early.timedOut ? 124 : exitCodeOf(status);
    return early;
  }
  if (got == sizeof failure) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::string reason = std::string(stepName(failure.step)) + ": " + std::strerror(failure.err);
    if (failure.step == 6 || failure.step == 8) {
      reason += " (cwd " + spec.cwd + ")";
    }
    return Status::error(what + " <- " + reason);
  }

  Fd pidFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  RunOutcome outcome;
  OutputFramer outFramer("stdout");
  OutputFramer errFramer("stderr");
  Clock::time_point killAt = Clock::time_point::max();
  Clock::time_point drainUntil = Clock::time_point::max();
  bool terminating = false;
  bool killed = false;
  bool exited = false;
  int status = 0;
  bool clientOpen = true;

  auto terminate = [&] {
    if (!terminating && !exited) {
      terminating = true;
      ::killpg(pid, SIGTERM);
      killAt = Clock::now() + std::chrono::seconds(spec.killGraceSec);
    }
  };
  auto reap = [&](int options) {
    pid_t r;
    do {
      r = ::waitpid(pid, &status, options);
    } while (r < 0 && errno == EINTR);
    if (r == pid) {
      exited = true;
      ::killpg(pid, SIGKILL);  // strays of the group
      // Output the strays wrote before dying is still in the pipes; a process that left the group
      // (setsid) could hold them open forever, so the drain is bounded.
      drainUntil = Clock::now() + std::chrono::seconds(2);
    }
  };
  auto forward = [&](Fd& fd, OutputFramer& framer) {
    char buf[65536];
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      std::string frames = framer.feed(std::string_view(buf, static_cast<size_t>(n)));
      if (clientOpen && !frames.empty() && !sendAll(clientFd, frames)) {
        clientOpen = false;
        outcome.clientGone = true;
        terminate();
      }
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      std::string frames = framer.flush();
      if (clientOpen && !frames.empty() && !sendAll(clientFd, frames)) {
        clientOpen = false;
        outcome.clientGone = true;
      }
      fd.reset();
    }
  };

  while (!exited || outR.get() >= 0 || errR.get() >= 0) {
    auto now = Clock::now();
    if (exited && now >= drainUntil) {
      break;
    }
    if (!exited && !terminating && now >= deadline) {
      outcome.timedOut = true;
      terminate();
    }
    if (!exited && terminating && !killed && now >= killAt) {
      killed = true;
      outcome.escalated = true;
      ::killpg(pid, SIGKILL);
    }
    auto next = exited
                    ? drainUntil
                    : (terminating ? (killed ? now + std::chrono::seconds(1) : killAt) : deadline);
    auto waitMs = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
    if (pidFd.get() < 0 && !exited) {
      waitMs = std::min<long long>(waitMs, 50);  // no pidfd: poll waitpid
    }
    struct pollfd p[5];
    int n = 0;
    int outIdx = -1, errIdx = -1, clientIdx = -1, stopIdx = -1, pidIdx = -1;
    if (outR.get() >= 0) {
      outIdx = n;
      p[n++] = {outR.get(), POLLIN, 0};
    }
    if (errR.get() >= 0) {
      errIdx = n;
      p[n++] = {errR.get(), POLLIN, 0};
    }
    if (clientOpen) {
      clientIdx = n;
      p[n++] = {clientFd, POLLIN | POLLRDHUP, 0};
    }
    if (stopFd >= 0 && !outcome.stopped) {
      stopIdx = n;
      p[n++] = {stopFd, POLLIN, 0};
    }
    if (pidFd.get() >= 0 && !exited) {
      pidIdx = n;
      p[n++] = {pidFd.get(), POLLIN, 0};
    }
    int ready =
        ::poll(p, n, static_cast<int>(std::min<long long>(std::max<long long>(waitMs, 0), 60000)));
    if (ready < 0 && errno != EINTR) {
      terminate();
      break;
    }
    if (ready <= 0) {
      if (pidFd.get() < 0 && !exited) {
        reap(WNOHANG);
      }
      continue;
    }
    if (outIdx >= 0 && p[outIdx].revents != 0) {
      forward(outR, outFramer);
    }
    if (errIdx >= 0 && p[errIdx].revents != 0) {
      forward(errR, errFramer);
    }
    if (clientIdx >= 0 && clientOpen && p[clientIdx].revents != 0) {
      // The client sends nothing after its request: data, end-of-file or an error all mean it
      // is done with us, and the run is cancelled.
      clientOpen = false;
      outcome.clientGone = true;
      terminate();
    }
    if (stopIdx >= 0 && p[stopIdx].revents != 0) {
      outcome.stopped = true;
      terminate();
    }
    if ((pidIdx >= 0 && p[pidIdx].revents != 0) || (pidFd.get() < 0 && !exited)) {
      reap(pidIdx >= 0 ? 0 : WNOHANG);
    }
  }
  if (!exited) {
    ::killpg(pid, SIGKILL);
    reap(0);
  }
  outcome.exitCode = outcome.timedOut ? 124 : exitCodeOf(status);
  return outcome;
}

}  // namespace hyper::broker
