// Push webhook authentication (hyperd/webhook_auth.h) on arbitrary secrets, bodies and
// headers. hyperd reads nothing of a push payload but its signature: a verified push only
// triggers a fetch of the configured source (hyperd/api.cc), so the signature and token
// checks are the whole parser. Input: secret, body and header separated by NUL bytes.
// Invariants: no crash; an empty secret never verifies; the right signature verifies (lower or
// upper case hex); one hex digit changed, anywhere in the 64, does not; a random header verifies
// only when it is the right signature; a GitLab token verifies exactly when it equals the secret.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "hyperd/webhook_auth.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

std::string_view field(std::string_view& rest) {
  size_t nul = rest.find('\0');
  std::string_view out = rest.substr(0, nul);
  rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  return out;
}

bool equalsIgnoringHexCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::string_view secret = field(rest);
  std::string_view body = field(rest);
  std::string_view header = field(rest);
  using hyper::controller::hmacSha256Hex;
  using hyper::controller::verifyGithubSignature;
  using hyper::controller::verifyGitlabToken;

  bool github = verifyGithubSignature(secret, body, header);
  bool gitlab = verifyGitlabToken(secret, header);
  if (secret.empty()) {
    FUZZ_CHECK(!github && !gitlab);
    return 0;
  }
  FUZZ_CHECK(gitlab == (header == secret));

  std::string good = hmacSha256Hex(secret, body);
  FUZZ_CHECK(good.size() == 64);
  FUZZ_CHECK(github ==
             (header.substr(0, 7) == "sha256=" && equalsIgnoringHexCase(header.substr(7), good)));
  FUZZ_CHECK(verifyGithubSignature(secret, body, "sha256=" + good));
  std::string upper = good;
  for (char& c : upper) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  FUZZ_CHECK(verifyGithubSignature(secret, body, "sha256=" + upper));
  // The near miss: one digit off at a position the input chooses.
  size_t at = body.empty() ? 0 : static_cast<unsigned char>(body[0]) % good.size();
  std::string off = good;
  off[at] = off[at] == '0' ? '1' : '0';
  FUZZ_CHECK(!verifyGithubSignature(secret, body, "sha256=" + off));
  FUZZ_CHECK(!verifyGithubSignature(secret, body, "sha256=" + good.substr(0, 63)));
  FUZZ_CHECK(!verifyGithubSignature(secret, body, "sha1=" + good));
  return 0;
}
