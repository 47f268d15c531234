// Near misses for known_hosts matching (source/known_hosts.h): a host name one character off,
// a port one off, a wildcard one character short of matching, and a key one byte off, shorter or
// longer. Each is refused; its twin that does match is accepted. The far-off cases are in
// known_hosts_test.cc.

#include <gtest/gtest.h>
#include <sodium.h>

#include "source/known_hosts.h"

namespace hyper::controller {
namespace {

// ssh-keygen -t ed25519 public keys; "[git.example.com]:2222" hashed with ssh-keygen -H.
const std::string kA = "AAAAC3NzaC1lZDI1NTE5AAAAII4F6VQSG7xsnlLNtvTp1eG8LAqBLdluysaXJDqoDDcU";
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

struct HostCase {
  std::string name;
  std::string hosts;  // the line's host field
  std::string host;
  int port;
  bool accepted;
};

// Failures name the case, not its bytes.
void PrintTo(const HostCase& c, std::ostream* os) { *os << c.name; }

class KnownHostsNearMissTest : public ::testing::TestWithParam<HostCase> {};

TEST_P(KnownHostsNearMissTest, Matches) {
  const HostCase& c = GetParam();
  auto hosts = KnownHosts::parse(c.hosts + " ssh-ed25519 " + kA + "\n", "kh");
  ASSERT_TRUE(hosts.isOk()) << hosts.status().message();
  Status s = hosts->verify(c.host, c.port, blob(kA));
  if (c.accepted) {
    EXPECT_TRUE(s.isOk()) << s.message();
  } else {
    ASSERT_FALSE(s.isOk()) << c.host << ":" << c.port << " matched " << c.hosts;
    EXPECT_NE(s.message().find(knownHostsName(c.host, c.port) + " is not listed in kh"),
              std::string::npos)
        << s.message();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KnownHostsNearMissTest,
    ::testing::Values(
        HostCase{"Exact", "example.com", "example.com", 22, true},
        HostCase{"OneCharacterShort", "example.com", "example.co", 22, false},
        HostCase{"OneCharacterLong", "example.com", "example.comm", 22, false},
        HostCase{"OneCharacterBefore", "example.com", "xexample.com", 22, false},
        HostCase{"OneCharacterChanged", "example.com", "exbmple.com", 22, false},
        HostCase{"SubdomainOfAPlainName", "example.com", "git.example.com", 22, false},
        HostCase{"UpperCaseHost", "example.com", "EXAMPLE.com", 22, true},
        HostCase{"AddressExact", "10.0.0.1", "10.0.0.1", 22, true},
        HostCase{"AddressOneDigitLonger", "10.0.0.1", "10.0.0.10", 22, false},
        HostCase{"AddressOneDigitShorter", "10.0.0.10", "10.0.0.1", 22, false},
        HostCase{"PortExact", "[example.com]:2222", "example.com", 2222, true},
        HostCase{"PortOneUp", "[example.com]:2222", "example.com", 2223, false},
        HostCase{"PortOneDigitShort", "[example.com]:2222", "example.com", 222, false},
        HostCase{"PortNameOtherHost", "[example.com]:2222", "example.co", 2222, false},
        HostCase{"HashedExact", kHashedGit2222, "git.example.com", 2222, true},
        HostCase{"HashedPortOneUp", kHashedGit2222, "git.example.com", 2223, false},
        HostCase{"HashedDefaultPort", kHashedGit2222, "git.example.com", 22, false},
        HostCase{"HashedOneCharacterShort", kHashedGit2222, "git.example.co", 2222, false},
        HostCase{"WildcardNeedsItsDot", "*.example.com", "example.com", 22, false},
        HostCase{"WildcardNeedsTheWholeSuffix", "*.example.com", "git.example.co", 22, false},
        HostCase{"WildcardIsNotASuffixOfMore", "*.example.com", "git.example.com.evil", 22, false},
        HostCase{"WildcardMatchesAnyRun", "*.example.com", "a.b.example.com", 22, true},
        HostCase{"QuestionMarkIsOneCharacter", "git?.example.com", "git1.example.com", 22, true},
        HostCase{"QuestionMarkIsNotNone", "git?.example.com", "git.example.com", 22, false},
        HostCase{"QuestionMarkIsNotTwo", "git?.example.com", "git12.example.com", 22, false},
        HostCase{"NegationIsExact", "*.example.com,!evil.example.com", "evil2.example.com", 22,
                 true},
        HostCase{"NegationWins", "*.example.com,!evil.example.com", "evil.example.com", 22, false},
        HostCase{"PlainNameIsNotAnyPort", "example.com", "example.com", 2222, false}),
    [](const ::testing::TestParamInfo<HostCase>& info) { return info.param.name; });

struct KeyCase {
  std::string name;
  std::string (*offered)(std::string listed);
};

// Failures name the case, not its bytes.
void PrintTo(const KeyCase& c, std::ostream* os) { *os << c.name; }

class KnownHostsKeyNearMissTest : public ::testing::TestWithParam<KeyCase> {};

TEST_P(KnownHostsKeyNearMissTest, IsRefused) {
  auto hosts = KnownHosts::parse("example.com ssh-ed25519 " + kA + "\n", "kh");
  ASSERT_TRUE(hosts.isOk()) << hosts.status().message();
  ASSERT_TRUE(hosts->verify("example.com", 22, blob(kA)).isOk());
  Status s = hosts->verify("example.com", 22, GetParam().offered(blob(kA)));
  ASSERT_FALSE(s.isOk()) << "accepted a key that is not the listed one";
  EXPECT_NE(s.message().find("host key verification failed"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("matches none of the keys kh lists for it (ssh-ed25519)"),
            std::string::npos)
      << s.message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KnownHostsKeyNearMissTest,
    ::testing::Values(
        KeyCase{"LastByte",
                [](std::string k) {
                  k.back() ^= 1;
                  return k;
                }},
        KeyCase{"FirstByteOfTheKey",
                [](std::string k) {
                  k[k.size() - 32] ^= 0x80;
                  return k;
                }},
        KeyCase{"OneByteShort", [](std::string k) { return k.substr(0, k.size() - 1); }},
        KeyCase{"OneByteLong", [](std::string k) { return k + std::string(1, '\0'); }},
        KeyCase{"HalfTheKey", [](std::string k) { return k.substr(0, k.size() - 16); }}),
    [](const ::testing::TestParamInfo<KeyCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::controller
