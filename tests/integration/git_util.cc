#include "tests/integration/git_util.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "host/command.h"

namespace hyper::test {

std::string runGit(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"git",
                                   "-c",
                                   "user.name=hyper test",
                                   "-c",
                                   "user.email=test@hyper.invalid",
                                   "-c",
                                   "commit.gpgsign=false",
                                   "-c",
                                   "tag.gpgsign=false",
                                   "-c",
                                   "init.defaultBranch=main"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto out = host::runChecked(argv);
  EXPECT_TRUE(out.isOk()) << out.status().message();
  std::string s = out.isOk() ? *out : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) {
    s.pop_back();
  }
  return s;
}

void commitAndPush(const std::string& work, const std::string& path, const std::string& content) {
  std::ofstream(work + "/" + path, std::ios::trunc) << content;
  runGit({"-C", work, "add", "-A"});
  runGit({"-C", work, "commit", "--quiet", "-m", "change " + path});
  runGit({"-C", work, "push", "--quiet", "origin", "HEAD:refs/heads/main"});
}

std::string networkManifest(const std::string& name, const std::string& cidr) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: " + name +
         "\nspec:\n  cidr: " + cidr + "\n";
}

void expectFetchesAndFollowsAPush(controller::GitSource& src, const std::string& work) {
  auto changed = src.changed();
  ASSERT_TRUE(changed.isOk()) << changed.status().message();
  EXPECT_TRUE(*changed);
  auto snap = src.fetch();
  ASSERT_TRUE(snap.isOk()) << snap.status().message();
  ASSERT_EQ(snap->files.size(), 1u);
  EXPECT_EQ(snap->files[0].path, "a.yaml");
  EXPECT_EQ(snap->files[0].content, networkManifest("a", "10.1.0.0/24"));

  changed = src.changed();
  ASSERT_TRUE(changed.isOk()) << changed.status().message();
  EXPECT_FALSE(*changed);

  commitAndPush(work, "b.yaml", networkManifest("b", "10.2.0.0/24"));
  changed = src.changed();
  ASSERT_TRUE(changed.isOk()) << changed.status().message();
  EXPECT_TRUE(*changed);
  auto next = src.fetch();
  ASSERT_TRUE(next.isOk()) << next.status().message();
  ASSERT_EQ(next->files.size(), 2u);
  EXPECT_EQ(next->files[1].path, "b.yaml");
  EXPECT_NE(next->commit, snap->commit);
}

SilentListener::SilentListener(int backlog) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(listen(fd_, backlog), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
}

SilentListener::~SilentListener() {
  for (int fd : clients_) {
    close(fd);
  }
  close(fd_);
}

void SilentListener::fillQueue() {
  for (int i = 0; i < 2; ++i) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    clients_.push_back(c);
  }
  usleep(100 * 1000);  // let the handshakes land in the queue
}

}  // namespace hyper::test
