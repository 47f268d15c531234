// Near misses for every secret comparison the API makes: a GitHub signature one hex digit off at
// each of its 64 positions (a compare of only the first 16 bytes passes most of them), one digit
// too long or short, a GitLab token or a bearer token one character off at its start, middle and
// end. The far-off cases are in webhook_auth_test.cc.

#include <gtest/gtest.h>

#include <string>

#include "hyperd/api.h"
#include "hyperd/webhook_auth.h"

namespace hyper::controller {
namespace {

const std::string kSecret = "topsecret";
const std::string kBody = R"({"ref":"refs/heads/main","after":"0123abcd"})";

// `hex` with the digit at `pos` replaced by another valid lowercase hex digit.
std::string flipDigit(std::string hex, size_t pos) {
  hex[pos] = hex[pos] == '0' ? '1' : '0';
  return hex;
}

TEST(WebhookSignatureNearMissTest, EveryDigitCounts) {
  const std::string good = hmacSha256Hex(kSecret, kBody);
  ASSERT_EQ(good.size(), 64u);
  ASSERT_TRUE(verifyGithubSignature(kSecret, kBody, "sha256=" + good));
  for (size_t pos = 0; pos < good.size(); ++pos) {
    EXPECT_FALSE(verifyGithubSignature(kSecret, kBody, "sha256=" + flipDigit(good, pos)))
        << "accepted a signature that differs only in hex digit " << pos << " (byte " << pos / 2
        << ")";
  }
}

struct SignatureCase {
  std::string name;
  // Builds the header from the right signature (64 lowercase hex digits).
  std::string (*header)(const std::string& good);
  bool accepted;
};

// Failures name the case, not its bytes.
void PrintTo(const SignatureCase& c, std::ostream* os) { *os << c.name; }

class WebhookSignatureShapeTest : public ::testing::TestWithParam<SignatureCase> {};

TEST_P(WebhookSignatureShapeTest, Verifies) {
  const std::string good = hmacSha256Hex(kSecret, kBody);
  const std::string header = GetParam().header(good);
  EXPECT_EQ(verifyGithubSignature(kSecret, kBody, header), GetParam().accepted) << header;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, WebhookSignatureShapeTest,
    ::testing::Values(
        SignatureCase{"Exact", [](const std::string& g) { return "sha256=" + g; }, true},
        SignatureCase{"LastByte", [](const std::string& g) { return "sha256=" + flipDigit(g, 63); },
                      false},
        SignatureCase{"FirstDigitOfByte16",
                      [](const std::string& g) { return "sha256=" + flipDigit(g, 32); }, false},
        SignatureCase{"LastDigitOfByte15",
                      [](const std::string& g) { return "sha256=" + flipDigit(g, 31); }, false},
        SignatureCase{
            "SecondHalfAllZero",
            [](const std::string& g) { return "sha256=" + g.substr(0, 32) + std::string(32, '0'); },
            false},
        SignatureCase{"OneDigitShort",
                      [](const std::string& g) { return "sha256=" + g.substr(0, 63); }, false},
        SignatureCase{"OneByteShort",
                      [](const std::string& g) { return "sha256=" + g.substr(0, 62); }, false},
        SignatureCase{"OneDigitLong", [](const std::string& g) { return "sha256=" + g + "0"; },
                      false},
        SignatureCase{"OneByteLong", [](const std::string& g) { return "sha256=" + g + "00"; },
                      false},
        SignatureCase{"TrailingNewline", [](const std::string& g) { return "sha256=" + g + "\n"; },
                      false},
        SignatureCase{"TrailingNul",
                      [](const std::string& g) { return "sha256=" + g + std::string(1, '\0'); },
                      false},
        SignatureCase{"LastDigitNotHex",
                      [](const std::string& g) { return "sha256=" + g.substr(0, 63) + "g"; },
                      false},
        SignatureCase{"PrefixOneLetterOff", [](const std::string& g) { return "sha255=" + g; },
                      false},
        SignatureCase{"PrefixColon", [](const std::string& g) { return "sha256:" + g; }, false},
        SignatureCase{"UpperCaseDigits",
                      [](const std::string& g) {
                        std::string u = g;
                        for (char& c : u) {
                          c = c >= 'a' && c <= 'f' ? static_cast<char>(c - 'a' + 'A') : c;
                        }
                        return "sha256=" + u;
                      },
                      true}),
    [](const ::testing::TestParamInfo<SignatureCase>& info) { return info.param.name; });

TEST(WebhookSignatureNearMissTest, TheBodyAndTheSecretCountToTheirLastByte) {
  const std::string good = "sha256=" + hmacSha256Hex(kSecret, kBody);
  std::string lastByte = kBody;
  lastByte.back() = '{';
  EXPECT_FALSE(verifyGithubSignature(kSecret, lastByte, good));
  EXPECT_FALSE(verifyGithubSignature(kSecret, kBody.substr(0, kBody.size() - 1), good));
  EXPECT_FALSE(verifyGithubSignature(kSecret, kBody + "\n", good));
  EXPECT_FALSE(verifyGithubSignature("topsecreT", kBody, good));
  EXPECT_FALSE(verifyGithubSignature("topsecre", kBody, good));
  EXPECT_FALSE(verifyGithubSignature("topsecret ", kBody, good));
}

struct TokenCase {
  std::string name;
  std::string sent;
  bool accepted;
};

// Failures name the case, not its bytes.
void PrintTo(const TokenCase& c, std::ostream* os) { *os << c.name; }

const std::string kToken = "glpat-0123456789abcdefghij-token";  // 32 characters

class GitlabTokenNearMissTest : public ::testing::TestWithParam<TokenCase> {};

TEST_P(GitlabTokenNearMissTest, Verifies) {
  EXPECT_EQ(verifyGitlabToken(kToken, GetParam().sent), GetParam().accepted) << GetParam().sent;
}

// The same near misses, behind "Bearer ": the API's token for /v1/*.
class BearerTokenNearMissTest : public ::testing::TestWithParam<TokenCase> {};

TEST_P(BearerTokenNearMissTest, Verifies) {
  EXPECT_EQ(tokenMatches(kToken, "Bearer " + GetParam().sent), GetParam().accepted)
      << GetParam().sent;
}

std::string replaceAt(std::string s, size_t pos, char c) {
  s[pos] = c;
  return s;
}

const auto kTokenCases = ::testing::Values(
    TokenCase{"Exact", kToken, true}, TokenCase{"FirstCharacter", replaceAt(kToken, 0, 'G'), false},
    TokenCase{"Character16", replaceAt(kToken, 16, 'X'), false},
    TokenCase{"LastCharacter", replaceAt(kToken, kToken.size() - 1, 'N'), false},
    TokenCase{"OneShort", kToken.substr(0, kToken.size() - 1), false},
    TokenCase{"OneLong", kToken + "n", false},
    TokenCase{"FirstHalf", kToken.substr(0, kToken.size() / 2), false},
    TokenCase{"TrailingSpace", kToken + " ", false},
    TokenCase{"TrailingNewline", kToken + "\n", false},
    TokenCase{"LeadingSpace", " " + kToken, false},
    TokenCase{"UpperCase", "GLPAT-0123456789ABCDEFGHIJ-TOKEN", false},
    TokenCase{"Empty", "", false});

INSTANTIATE_TEST_SUITE_P(Cases, GitlabTokenNearMissTest, kTokenCases,
                         [](const ::testing::TestParamInfo<TokenCase>& info) {
                           return info.param.name;
                         });
INSTANTIATE_TEST_SUITE_P(Cases, BearerTokenNearMissTest, kTokenCases,
                         [](const ::testing::TestParamInfo<TokenCase>& info) {
                           return info.param.name;
                         });

TEST(BearerTokenNearMissTest, TheSchemeIsExact) {
  EXPECT_TRUE(tokenMatches(kToken, "Bearer " + kToken));
  EXPECT_FALSE(tokenMatches(kToken, kToken));
  EXPECT_FALSE(tokenMatches(kToken, "Bearer" + kToken));
  EXPECT_FALSE(tokenMatches(kToken, "Bearer  " + kToken));
  EXPECT_FALSE(tokenMatches(kToken, "Basic " + kToken));
  EXPECT_FALSE(tokenMatches(kToken, "Bearer "));
  // No token configured: nothing matches, not even an empty one.
  EXPECT_FALSE(tokenMatches("", "Bearer "));
  EXPECT_FALSE(tokenMatches("", ""));
}

}  // namespace
}  // namespace hyper::controller
