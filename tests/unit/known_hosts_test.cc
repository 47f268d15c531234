#include "source/known_hosts.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstring>

// Keys made with ssh-keygen -t ed25519 / -t ecdsa; hashed names with ssh-keygen -H.

namespace hyper::controller {
namespace {

const std::string kA = "AAAAC3NzaC1lZDI1NTE5AAAAII4F6VQSG7xsnlLNtvTp1eG8LAqBLdluysaXJDqoDDcU";
const std::string kB = "AAAAC3NzaC1lZDI1NTE5AAAAIDMR5tEO0vW8O81IHToG7kYmGWg2kca6tEVL6yvNOjZX";
const std::string kEcdsa =
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBH/YbnKjt0UqmZfBKtu1Ug3akiBRuzJ5WyOzrvsF"
    "MrHVqX+JN+3S53yfWwT9TAj+PLpQMETnxxBcse1CMssbpmg=";
// "example.com" and "[git.example.com]:2222", hashed.
const std::string kHashedExample = "|1|5NT2oU/SESJBNpx/I0A5eelNeUE=|3qL7fwJTppwRXIp4BN2sKhtrL8Q=";
const std::string kHashedGit2222 = "|1|J9KG9JR4tEWjlzRrSCUsn6QW4OE=|EJog4olLKNDd9s+vduqCVsBsjRQ=";

std::string blob(const std::string& b64) {
  std::string out(b64.size(), '\0');
  size_t len = 0;
  EXPECT_EQ(sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), b64.data(),
                              b64.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL),
            0);
  out.resize(len);
  return out;
}

struct VerifyCase {
  std::string name;
  std::string file;
  std::string host;
  int port;
  std::string key;    // base64
  std::string error;  // "" = accepted; else a substring of the error
};

class KnownHostsVerifyTest : public ::testing::TestWithParam<VerifyCase> {};

TEST_P(KnownHostsVerifyTest, Verifies) {
  const VerifyCase& c = GetParam();
  auto hosts = KnownHosts::parse(c.file, "kh");
  ASSERT_TRUE(hosts.isOk()) << hosts.status().message();
  Status s = hosts->verify(c.host, c.port, blob(c.key));
  if (c.error.empty()) {
    EXPECT_TRUE(s.isOk()) << s.message();
  } else {
    ASSERT_FALSE(s.isOk());
    EXPECT_NE(s.message().find(c.error), std::string::npos) << s.message();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KnownHostsVerifyTest,
    ::testing::Values(
        VerifyCase{"Plain", "example.com ssh-ed25519 " + kA + " c\n", "example.com", 22, kA, ""},
        VerifyCase{"CaseInsensitive", "Example.COM ssh-ed25519 " + kA + "\n", "example.com", 22, kA,
                   ""},
        VerifyCase{"OneOfAList", "a.test,example.com,10.0.0.1 ssh-ed25519 " + kA + "\n", "10.0.0.1",
                   22, kA, ""},
        VerifyCase{"NonDefaultPort", "[example.com]:2222 ssh-ed25519 " + kA + "\n", "example.com",
                   2222, kA, ""},
        VerifyCase{"PlainNameIsPort22Only", "example.com ssh-ed25519 " + kA + "\n", "example.com",
                   2222, kA, "[example.com]:2222 is not listed in kh"},
        VerifyCase{"PortNameIsThatPortOnly", "[example.com]:2222 ssh-ed25519 " + kA + "\n",
                   "example.com", 22, kA, "example.com is not listed in kh"},
        VerifyCase{"Wildcard", "*.example.com ssh-ed25519 " + kA + "\n", "git.example.com", 22, kA,
                   ""},
        VerifyCase{"QuestionMark", "git?.example.com ssh-ed25519 " + kA + "\n", "git1.example.com",
                   22, kA, ""},
        VerifyCase{"NegationWins", "*.example.com,!evil.example.com ssh-ed25519 " + kA + "\n",
                   "evil.example.com", 22, kA, "is not listed"},
        VerifyCase{"Hashed", kHashedExample + " ssh-ed25519 " + kA + "\n", "example.com", 22, kA,
                   ""},
        VerifyCase{"HashedWithPort", kHashedGit2222 + " ssh-ed25519 " + kA + "\n",
                   "git.example.com", 2222, kA, ""},
        VerifyCase{"HashedOtherHost", kHashedExample + " ssh-ed25519 " + kA + "\n", "example.org",
                   22, kA, "example.org is not listed"},
        VerifyCase{"WrongKey", "example.com ssh-ed25519 " + kA + "\n", "example.com", 22, kB,
                   "the ssh-ed25519 host key example.com presented (SHA256:"},
        VerifyCase{"WrongKeyNamesListedTypes", "example.com ecdsa-sha2-nistp256 " + kEcdsa + "\n",
                   "example.com", 22, kA,
                   "matches none of the keys kh lists for it "
                   "(ecdsa-sha2-nistp256)"},
        VerifyCase{
            "SecondKeyOfTheHost",
            "example.com ecdsa-sha2-nistp256 " + kEcdsa + "\nexample.com ssh-ed25519 " + kA + "\n",
            "example.com", 22, kA, ""},
        VerifyCase{"Revoked",
                   "example.com ssh-ed25519 " + kA + "\n@revoked * ssh-ed25519 " + kA + "\n",
                   "example.com", 22, kA, "is marked @revoked in kh:2"},
        VerifyCase{"CertAuthorityIsNotAHostKey",
                   "@cert-authority example.com ssh-ed25519 " + kA + "\n", "example.com", 22, kA,
                   "is not listed"},
        VerifyCase{"CommentsAndBlankLines",
                   "# hosts\n\n   \nexample.com ssh-ed25519 " + kA + "\r\n", "example.com", 22, kA,
                   ""}),
    [](const ::testing::TestParamInfo<VerifyCase>& info) { return info.param.name; });

struct ParseErrorCase {
  std::string name;
  std::string file;
  std::string error;
};

class KnownHostsParseTest : public ::testing::TestWithParam<ParseErrorCase> {};

TEST_P(KnownHostsParseTest, RejectsWithFileAndLine) {
  auto hosts = KnownHosts::parse(GetParam().file, "kh");
  ASSERT_FALSE(hosts.isOk());
  EXPECT_NE(hosts.status().message().find(GetParam().error), std::string::npos)
      << hosts.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KnownHostsParseTest,
    ::testing::Values(
        ParseErrorCase{"TooFewFields", "# c\nexample.com ssh-ed25519\n",
                       "kh:2: 2 fields (expected HOSTS KEYTYPE BASE64-KEY"},
        ParseErrorCase{"BadBase64", "example.com ssh-ed25519 AAAA%%%\n",
                       "kh:1: the key of type ssh-ed25519 is not valid base64"},
        ParseErrorCase{
            "TypeMismatch", "example.com ssh-rsa " + kA + "\n",
            "kh:1: the key says it is of type \"ssh-ed25519\", the line says \"ssh-rsa\""},
        ParseErrorCase{"UnknownMarker", "@trusted example.com ssh-ed25519 " + kA + "\n",
                       "kh:1: unknown marker \"@trusted\""},
        ParseErrorCase{"UnknownHash", "|2|abc|def ssh-ed25519 " + kA + "\n",
                       "kh:1: hashed host name of an unknown kind"},
        ParseErrorCase{"MalformedHash", "|1|notbase64!|x ssh-ed25519 " + kA + "\n",
                       "kh:1: malformed hashed host name"},
        ParseErrorCase{"NoHosts", ",,, ssh-ed25519 " + kA + "\n", "kh:1: no host names"}),
    [](const ::testing::TestParamInfo<ParseErrorCase>& info) { return info.param.name; });

TEST(KnownHostsTest, FingerprintAndTypeAsSshKeygenShowsThem) {
  EXPECT_EQ(sshKeyFingerprint(blob(kA)), "SHA256:oQOxT6AxnQK208/UL0MYTkNAF1k08hr9HvaLhZlDRJ0");
  EXPECT_EQ(sshKeyType(blob(kA)), "ssh-ed25519");
  EXPECT_EQ(sshKeyType(blob(kEcdsa)), "ecdsa-sha2-nistp256");
  EXPECT_EQ(sshKeyType(std::string_view("\x00\x00\x00\xff", 4)), "");
  EXPECT_EQ(knownHostsName("Git.Example.com", 22), "git.example.com");
  EXPECT_EQ(knownHostsName("::1", 2222), "[::1]:2222");
}

TEST(KnownHostsTest, LoadNamesAMissingFile) {
  auto hosts = KnownHosts::load("/nonexistent/known_hosts");
  ASSERT_FALSE(hosts.isOk());
  EXPECT_EQ(hosts.status().message(),
            "read known_hosts file /nonexistent/known_hosts <- No such file or directory");
}

}  // namespace
}  // namespace hyper::controller
