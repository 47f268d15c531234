#pragma once

#include <string>
#include <string_view>

namespace hyper::controller {

// Authentication of push webhooks (POST /v1/hooks/git) and signing of outgoing alert webhooks.
// Every comparison against a secret runs in constant time; an empty secret never verifies
// (a configuration that forgot its secret must not accept everything or nothing silently: the
// config loader rejects empty secret files, and this is the second line).

// Lowercase hex of HMAC-SHA256(key, body). Any key length (RFC 2104: longer keys are hashed).
std::string hmacSha256Hex(std::string_view key, std::string_view body);

// GitHub's `X-Hub-Signature-256: sha256=<64 hex digits>` over the raw request body. A missing,
// malformed (wrong prefix, wrong length, non-hex) or wrong signature is false. Hex digits may be
// upper or lower case.
bool verifyGithubSignature(std::string_view secret, std::string_view body, std::string_view header);

// GitLab's `X-Gitlab-Token`, which carries the secret itself. Both sides are hashed and the
// digests compared in constant time, so the time taken reveals neither the secret's content nor
// its length (only the length of the header the caller sent, which the caller already knows).
bool verifyGitlabToken(std::string_view secret, std::string_view header);

}  // namespace hyper::controller
