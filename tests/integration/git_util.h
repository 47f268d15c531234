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

}  // namespace hyper::test
