#pragma once

#include <string>
#include <vector>

#include "source/git_source.h"

namespace hyper::test {

// The git command line with a fixed test identity, no signing and `main` as the default branch,
// never through a shell. A failure is a test failure (EXPECT) and gives "". The output without
// trailing newlines.
std::string runGit(const std::vector<std::string>& args);

// Writes `content` to work/path, commits everything and pushes HEAD to the remote's main.
void commitAndPush(const std::string& work, const std::string& path, const std::string& content);

// A Network manifest, the content the git source tests push.
std::string networkManifest(const std::string& name, const std::string& cidr);

// The same checks over every transport: with a.yaml (networkManifest("a", "10.1.0.0/24")) pushed
// and nothing fetched yet, `src` sees a change and fetches it; then sees none; then, after this
// pushes b.yaml from `work`, sees one again and fetches both files at a new commit.
void expectFetchesAndFollowsAPush(controller::GitSource& src, const std::string& work);

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
