#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hyper {

// Standard base64 with padding (RFC 4648, libsodium's ORIGINAL variant): what DSSE envelopes,
// sealed values, ssh keys and the file sources a diff sends to hyperd use.
std::string encodeBase64(std::string_view bytes);

// Decodes the whole of `text` (strict: any byte that is not base64, or missing padding, fails)
// into `out`; false, with `out` unspecified, when it does not decode or decodes to more than
// `maxBytes` (decided from the text's length before anything is allocated).
bool decodeBase64(std::string_view text, std::string& out, size_t maxBytes = SIZE_MAX);

}  // namespace hyper
