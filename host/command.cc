#include "host/command.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <tuple>

#include "base/fd.h"

extern char** environ;

namespace hyper::host {

namespace {

std::string errnoText(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

// A pipe whose ends are close-on-exec, so that a command started concurrently by another thread
// does not inherit them and keep our reads from ever seeing end-of-file.
Status makePipe(Fd& readEnd, Fd& writeEnd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Status::error(errnoText("pipe2", errno));
  }
  readEnd.reset(fds[0]);
  writeEnd.reset(fds[1]);
  return Status::ok();
}

// Writing to a pipe whose reader has exited raises SIGPIPE, which would kill the whole daemon.
// The signal is blocked on this thread for the duration of the write, and a SIGPIPE that the
// write itself raised is consumed before unblocking, so nobody else ever sees it.
class SigpipeBlocker {
 public:
  SigpipeBlocker() {
    sigemptyset(&pipeSet_);
    sigaddset(&pipeSet_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    wasPending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipeSet_, &old_);
  }
  ~SigpipeBlocker() {
    if (!wasPending_) {
      struct timespec zero = {0, 0};
      while (sigtimedwait(&pipeSet_, nullptr, &zero) == -1 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlocker(const SigpipeBlocker&) = delete;
  SigpipeBlocker& operator=(const SigpipeBlocker&) = delete;

 private:
  sigset_t pipeSet_;
  sigset_t old_;
  bool wasPending_ = false;
};

std::string joinArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) {
      out += ' ';
    }
    out += a;
  }
  return out;
}

// Why pumping stopped before the child closed its pipes.
enum class Stop { None, Timeout, Cancel };

// Feeds `input` to the child's stdin and drains its stdout and stderr at the same time: a child
// that fills one pipe while we block on another would otherwise deadlock with us. With a timeout
// or a cancel flag, returns early (setting `stop`) when either fires; the caller kills the child.
Status pumpPipes(Fd& in, Fd& out, Fd& err, const std::string& input, const CommandOptions& options,
                 CommandResult& result, Stop& stop) {
  using Clock = std::chrono::steady_clock;
  const auto deadline =
      options.timeout.count() > 0 ? Clock::now() + options.timeout : Clock::time_point::max();
  size_t written = 0;
  if (input.empty()) {
    in.reset();
  } else if (::fcntl(in.get(), F_SETFL, O_NONBLOCK) != 0) {
    return Status::error(errnoText("fcntl", errno));
  }
  SigpipeBlocker blockSigpipe;
  char buf[65536];
  while (in.get() >= 0 || out.get() >= 0 || err.get() >= 0) {
    struct pollfd fds[3];
    int n = 0;
    int inIdx = -1;
    int outIdx = -1;
    int errIdx = -1;
    if (in.get() >= 0) {
      inIdx = n;
      fds[n++] = {in.get(), POLLOUT, 0};
    }
    if (out.get() >= 0) {
      outIdx = n;
      fds[n++] = {out.get(), POLLIN, 0};
    }
    if (err.get() >= 0) {
      errIdx = n;
      fds[n++] = {err.get(), POLLIN, 0};
    }
    int waitMs = -1;
    if (options.cancel != nullptr) {
      if (options.cancel->load()) {
        stop = Stop::Cancel;
        return Status::ok();
      }
      waitMs = 100;  // how soon a cancel is noticed
    }
    if (deadline != Clock::time_point::max()) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        stop = Stop::Timeout;
        return Status::ok();
      }
      waitMs = waitMs < 0 ? static_cast<int>(std::min<long long>(left, 1 << 30))
                          : static_cast<int>(std::min<long long>(left, waitMs));
    }
    if (::poll(fds, n, waitMs) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Status::error(errnoText("poll", errno));
    }
    if (inIdx >= 0 && fds[inIdx].revents != 0) {
      ssize_t w = ::write(in.get(), input.data() + written, input.size() - written);
      if (w > 0) {
        written += static_cast<size_t>(w);
        if (written == input.size()) {
          in.reset();  // end of input
        }
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        // EPIPE: the command exited without reading everything; its exit code tells why.
        in.reset();
      }
    }
    for (auto [idx, fd, sink] :
         {std::tuple{outIdx, &out, &result.out}, std::tuple{errIdx, &err, &result.err}}) {
      if (idx < 0 || fds[idx].revents == 0) {
        continue;
      }
      ssize_t r = ::read(fd->get(), buf, sizeof buf);
      if (r > 0) {
        size_t keep = static_cast<size_t>(r);
        if (options.maxOutputBytes > 0) {
          keep = sink->size() >= options.maxOutputBytes
                     ? 0
                     : std::min(keep, options.maxOutputBytes - sink->size());
        }
        sink->append(buf, keep);
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        fd->reset();
      }
    }
  }
  return Status::ok();
}

}  // namespace

Result<CommandResult> runCommand(const std::vector<std::string>& argv, const std::string& input) {
  return runCommand(argv, input, CommandOptions{});
}

Result<CommandResult> runCommand(const std::vector<std::string>& argv, const std::string& input,
                                 const CommandOptions& options) {
  if (argv.empty()) {
    return Status::error("run command <- empty argv");
  }
  Fd inRead, inWrite, outRead, outWrite, errRead, errWrite;
  HYPER_RETURN_IF_ERROR(makePipe(inRead, inWrite).withContext(joinArgv(argv)));
  HYPER_RETURN_IF_ERROR(makePipe(outRead, outWrite).withContext(joinArgv(argv)));
  HYPER_RETURN_IF_ERROR(makePipe(errRead, errWrite).withContext(joinArgv(argv)));

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, inRead.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, outWrite.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, errWrite.get(), STDERR_FILENO);
  // The child gets stdin, stdout and stderr and nothing else: a descriptor another thread
  // opened without O_CLOEXEC (cpp-httplib's sockets, a library's file) would otherwise live on
  // in QEMU or a command, keeping a port bound or a peer waiting after hyperd has closed it.
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  if (!options.cwd.empty()) {
    posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
  }
  // A command that may be killed early gets its own process group, so the kill reaches whatever
  // it started (tar under dpkg-deb, gzip under tar).
  const bool killable = options.timeout.count() > 0 || options.cancel != nullptr;

  // The child starts with no blocked signals and default SIGPIPE whatever this thread or the
  // daemon has set: `ip` and `nft` expect an ordinary environment.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (killable) {
    posix_spawnattr_setpgroup(&attr, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&attr, flags);

  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);

  // The environment: ours, with options.env's names replaced or added.
  std::vector<std::string> envText;
  std::vector<char*> envp;
  char** environment = environ;
  if (!options.env.empty()) {
    std::map<std::string, std::string> byName;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string_view entry(*e);
      byName[std::string(entry.substr(0, entry.find('=')))] = std::string(entry);
    }
    for (const auto& entry : options.env) {
      byName[entry.substr(0, entry.find('='))] = entry;
    }
    for (auto& [name, entry] : byName) {
      envText.push_back(std::move(entry));
    }
    for (auto& entry : envText) {
      envp.push_back(entry.data());
    }
    envp.push_back(nullptr);
    environment = envp.data();
  }

  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environment);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Status::error(joinArgv(argv) + " <- " + errnoText("spawn", rc));
  }
  // Only the child keeps these ends; holding them here would hide end-of-file.
  inRead.reset();
  outWrite.reset();
  errWrite.reset();

  CommandResult result;
  Stop stop = Stop::None;
  Status pumped = pumpPipes(inWrite, outRead, errRead, input, options, result, stop);
  if (stop != Stop::None) {
    result.timedOut = stop == Stop::Timeout;
    result.cancelled = stop == Stop::Cancel;
    ::kill(-pid, SIGKILL);  // the whole group
    inWrite.reset();
    outRead.reset();
    errRead.reset();
  }
  if (!pumped.isOk()) {
    // We can no longer drain its output, so it could block forever: stop it before reaping.
    ::kill(killable ? -pid : pid, SIGKILL);
    inWrite.reset();
    outRead.reset();
    errRead.reset();
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return Status::error(joinArgv(argv) + " <- " + errnoText("waitpid", errno));
    }
  }
  if (!pumped.isOk()) {
    return pumped.withContext(joinArgv(argv));
  }
  if (WIFEXITED(status)) {
    result.exitCode = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exitCode = 128 + WTERMSIG(status);
  }
  return result;
}

Result<std::string> runChecked(const std::vector<std::string>& argv, const std::string& input) {
  return runChecked(argv, input, CommandOptions{});
}

Result<std::string> runChecked(const std::vector<std::string>& argv, const std::string& input,
                               const CommandOptions& options) {
  HYPER_ASSIGN_OR_RETURN(CommandResult r, runCommand(argv, input, options));
  if (r.timedOut) {
    return Status::error(joinArgv(argv) + " <- timed out after " +
                         std::to_string(options.timeout.count()) +
                         " ms (its process group killed)");
  }
  if (r.cancelled) {
    return Status::error(joinArgv(argv) + " <- cancelled (its process group killed)");
  }
  if (r.exitCode == 0) {
    return std::move(r.out);
  }
  std::string cause;
  size_t start = 0;
  while (cause.empty() && start < r.err.size()) {
    size_t end = r.err.find('\n', start);
    if (end == std::string::npos) {
      end = r.err.size();
    }
    cause = r.err.substr(start, end - start);
    start = end + 1;
  }
  if (cause.empty()) {
    cause = "exited with status " + std::to_string(r.exitCode);
  }
  return Status::error(joinArgv(argv) + " <- " + cause);
}

}  // namespace hyper::host
