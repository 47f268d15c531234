#pragma once

#include <string>
#include <string_view>

namespace hyper {

// Text that came from a guest (console, channels) or any other untrusted writer, made safe for
// events, alerts, logs and terminals: bytes below 0x20 other than tab, 0x7f, and every byte that
// is not part of valid UTF-8 become "\xHH"; a backslash becomes "\\" so that the escaping cannot
// be forged. Tab and valid UTF-8 ("é", "→") are kept as they are.
std::string escapeControl(std::string_view text);

// The offset of the first byte of `text` that is not part of valid UTF-8 (RFC 3629: no overlong
// forms, surrogates or code points above U+10FFFF), or std::string_view::npos when it is valid.
size_t firstInvalidUtf8(std::string_view text);

// `text` for an error message when it came from someone not trusted (a guest, a peer): escaped
// (escapeControl), at most `maxChars` characters of it, escapes included (never cut inside one),
// in double quotes, "..." before the closing quote when cut.
std::string quotedExcerpt(std::string_view text, size_t maxChars = 80);

}  // namespace hyper
