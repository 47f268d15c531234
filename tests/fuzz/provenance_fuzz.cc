// Provenance envelopes (store/provenance.h) as hyperctl verify reads them from the store: a file
// that anyone with write access to the state dir could have replaced. Input: the envelope's JSON
// text. Invariants: no crash; nothing opens unless it verifies with the key, so only the envelope
// this target signed itself opens, and it opens to the statement that was signed.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "store/provenance.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

const hyper::store::HostKey& key() {
  static const hyper::store::HostKey k = hyper::store::HostKey::generate();
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json envelope = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (envelope.is_discarded()) {
    return 0;
  }
  // Any shape of statement reads back without throwing (hyperctl verify and rebuild read inputs).
  (void)hyper::store::statementInputs(envelope);
  auto opened = hyper::store::openEnvelope(envelope, key());
  if (opened.isOk()) {
    // Only a real signature opens: signing what came out gives back an equal envelope.
    auto again = hyper::store::signEnvelope(*opened, key());
    FUZZ_CHECK(again.isOk());
    FUZZ_CHECK((*again)["payload"] == envelope["payload"]);
  }
  // Whatever came in, a statement signed now opens to itself.
  nlohmann::json statement = {{"_type", "https://in-toto.io/Statement/v1"}, {"input", text}};
  auto signedNow = hyper::store::signEnvelope(statement, key());
  FUZZ_CHECK(signedNow.isOk());
  auto back = hyper::store::openEnvelope(*signedNow, key());
  FUZZ_CHECK(back.isOk() && *back == statement);
  return 0;
}
