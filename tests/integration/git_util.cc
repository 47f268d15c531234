#include "tests/integration/git_util.h"

#include <gtest/gtest.h>

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

}  // namespace hyper::test
