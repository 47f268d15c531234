#include <gtest/gtest.h>

#include "source/git_source.h"

namespace hyper::controller {
namespace {

struct UrlCase {
  std::string name;
  std::string url;
  std::string shown;
};

class StripUrlCredentialsTest : public ::testing::TestWithParam<UrlCase> {};

TEST_P(StripUrlCredentialsTest, RemovesUserinfoOnly) {
  EXPECT_EQ(stripUrlCredentials(GetParam().url), GetParam().shown);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, StripUrlCredentialsTest,
    ::testing::Values(
        UrlCase{"UserAndPassword", "https://user:secret@example.com/env.git",
                "https://example.com/env.git"},
        UrlCase{"TokenOnly", "https://ghp_token@github.com/o/r.git", "https://github.com/o/r.git"},
        UrlCase{"WithPort", "http://u:p@127.0.0.1:1/x.git", "http://127.0.0.1:1/x.git"},
        UrlCase{"AtInPassword", "https://u:p%40ss@h/x", "https://h/x"},
        UrlCase{"RawAtInPassword", "https://u:p@ss@h/x", "https://h/x"},
        UrlCase{"AtInPathKept", "https://h/x@y.git", "https://h/x@y.git"},
        UrlCase{"NoAuthorityPath", "https://h", "https://h"},
        UrlCase{"SshUser", "ssh://git@h/x.git", "ssh://h/x.git"},
        UrlCase{"FileUrl", "file:///srv/env.git", "file:///srv/env.git"},
        UrlCase{"PlainPath", "/srv/env.git", "/srv/env.git"},
        UrlCase{"ScpLikeUntouched", "git@github.com:o/r.git", "git@github.com:o/r.git"}),
    [](const ::testing::TestParamInfo<UrlCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::controller
