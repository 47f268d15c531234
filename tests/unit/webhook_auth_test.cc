#include "hyperd/webhook_auth.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <unistd.h>

namespace hyper::controller {
namespace {

// HMAC-SHA256 of `body` as computed by the openssl command line, an implementation independent
// of libsodium. The body goes through a file so that no shell quoting touches it.
std::string opensslHmac(const std::string& key, const std::string& body) {
  char path[] = "/tmp/hyper-hmac-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path, std::ios::binary);
    out << body;
  }
  // Keys in these tests are shell-safe (no single quote).
  std::string cmd = "openssl dgst -sha256 -r -hmac '" + key + "' < " + path;
  std::string output;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, p)) {
      output += buf;
    }
    EXPECT_EQ(pclose(p), 0) << cmd;
  }
  unlink(path);
  // "-r" prints "<hex> *stdin".
  return output.substr(0, output.find(' '));
}

TEST(WebhookAuthTest, Rfc4231Vectors) {
  // RFC 4231 test case 2.
  EXPECT_EQ(hmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block size is hashed first.
  EXPECT_EQ(hmacSha256Hex(std::string(131, '\xaa'),
                          "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(WebhookAuthTest, MatchesOpenssl) {
  const std::string key = "s3cr3t-key_with.punct!&$ and space";
  for (const std::string& body :
       {std::string(""), std::string(R"({"ref":"refs/heads/main","after":"abc"})"),
        std::string("line one\nline two\n\0binary", 25), std::string(100000, 'x')}) {
    std::string expected = opensslHmac(key, body);
    ASSERT_EQ(expected.size(), 64u);
    EXPECT_EQ(hmacSha256Hex(key, body), expected);
    EXPECT_TRUE(verifyGithubSignature(key, body, "sha256=" + expected));
  }
}

TEST(WebhookAuthTest, GithubSignatureRejectsWrongAndMalformed) {
  const std::string secret = "topsecret";
  const std::string body = R"({"ref":"refs/heads/main"})";
  const std::string good = opensslHmac(secret, body);
  ASSERT_TRUE(verifyGithubSignature(secret, body, "sha256=" + good));

  std::string upper = good;
  for (char& c : upper) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  EXPECT_TRUE(verifyGithubSignature(secret, body, "sha256=" + upper));

  std::string flipped = good;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  EXPECT_FALSE(verifyGithubSignature(secret, body, "sha256=" + flipped));
  EXPECT_FALSE(verifyGithubSignature("othersecret", body, "sha256=" + good));
  EXPECT_FALSE(verifyGithubSignature(secret, body + " ", "sha256=" + good));
  EXPECT_FALSE(verifyGithubSignature(secret, body, ""));
  EXPECT_FALSE(verifyGithubSignature(secret, body, good));                     // no prefix
  EXPECT_FALSE(verifyGithubSignature(secret, body, "sha1=" + good));           // wrong scheme
  EXPECT_FALSE(verifyGithubSignature(secret, body, "sha256=" + good + "00"));  // too long
  EXPECT_FALSE(verifyGithubSignature(secret, body, "sha256=" + good.substr(2)));
  EXPECT_FALSE(verifyGithubSignature(secret, body, "sha256=" + good.substr(1) + "g"));
  EXPECT_FALSE(verifyGithubSignature(secret, body, " sha256=" + good));
  // An empty secret verifies nothing, not even its own signature.
  EXPECT_FALSE(verifyGithubSignature("", body, "sha256=" + hmacSha256Hex("", body)));
}

TEST(WebhookAuthTest, GitlabToken) {
  EXPECT_TRUE(verifyGitlabToken("glpat-token-123", "glpat-token-123"));
  EXPECT_FALSE(verifyGitlabToken("glpat-token-123", "glpat-token-124"));
  EXPECT_FALSE(verifyGitlabToken("glpat-token-123", "glpat-token-12"));
  EXPECT_FALSE(verifyGitlabToken("glpat-token-123", "glpat-token-1234"));
  EXPECT_FALSE(verifyGitlabToken("glpat-token-123", ""));
  EXPECT_FALSE(verifyGitlabToken("", ""));
  EXPECT_FALSE(verifyGitlabToken(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
  EXPECT_TRUE(verifyGitlabToken(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
}

}  // namespace
}  // namespace hyper::controller
