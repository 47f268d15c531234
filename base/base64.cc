#include "base/base64.h"

#include <sodium.h>

namespace hyper {

std::string encodeBase64(std::string_view bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

bool decodeBase64(std::string_view text, std::string& out, size_t maxBytes) {
  if (maxBytes != SIZE_MAX && text.size() > (maxBytes / 3 + 2) * 4) {
    return false;
  }
  out.assign(text.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size() || len > maxBytes) {
    return false;
  }
  out.resize(len);
  return true;
}

}  // namespace hyper
