#pragma once

#include <string>
#include <vector>

namespace hyper::test {

// The git command line with a fixed test identity, no signing and `main` as the default branch,
// never through a shell. A failure is a test failure (EXPECT) and gives "". The output without
// trailing newlines.
std::string runGit(const std::vector<std::string>& args);

// Writes `content` to work/path, commits everything and pushes HEAD to the remote's main.
void commitAndPush(const std::string& work, const std::string& path, const std::string& content);

// A TCP listener on 127.0.0.1 that completes handshakes (the kernel does) and never says a word:
// a remote that hangs. With backlog 0 and fillQueue(), further SYNs are dropped, as a firewall
// that drops would.
class SilentListener {
 public:
  explicit SilentListener(int backlog);
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }
  // Fills the accept queue (never accepted), so that further SYNs are dropped.
  void fillQueue();

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> clients_;
};

}  // namespace hyper::test
