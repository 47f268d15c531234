// YAML -> JSON conversion (reconciler/yaml_json.h) on arbitrary bytes, with small limits so that
// the fuzzer reaches every limit's error path. Invariants: no crash; a document without errors
// serialises to JSON that parses back to the same value; the pieces of splitYamlStreamByContent
// (cut at every document start, and by content) join to the input, and when each parses without a
// diagnostic (the loader's condition for taking them) they give the documents and lines the whole
// gives.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reconciler/yaml_json.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string content(reinterpret_cast<const char*>(data), size);
  auto fileName = std::make_shared<const std::string>("fuzz.yaml");
  hyper::YamlLimits limits;
  limits.maxDepth = 32;
  limits.maxNodesPerDocument = 5000;
  limits.maxBytesPerDocument = 256 << 10;
  limits.maxStringBytes = 16 << 10;
  limits.maxDocumentsPerFile = 100;
  hyper::Diagnostics diagnostics;
  auto docs = hyper::parseYamlDocuments(content, fileName, diagnostics, limits);
  FUZZ_CHECK(docs.size() <= limits.maxDocumentsPerFile);
  for (const auto& doc : docs) {
    if (doc.hasErrors) {
      continue;
    }
    std::string text = doc.value.dump(-1, ' ', false, hyper::Json::error_handler_t::replace);
    hyper::Json back = hyper::Json::parse(text, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(!back.is_discarded());
    // Strings with invalid UTF-8 are replaced on dump; compare only when there were none.
    std::string strict;
    try {
      strict = doc.value.dump();
    } catch (const hyper::Json::exception&) {
      continue;
    }
    FUZZ_CHECK(back == doc.value || back.dump() == strict);
  }
  (void)diagnostics.format();

  // Both ways of cutting: in three by size, and by content with pieces small enough to cut a
  // fuzzer's input.
  auto checkPieces = [&](const std::vector<hyper::YamlPiece>& pieces) {
    std::string joined;
    std::vector<hyper::YamlDocument> fromPieces;
    bool clean = true;
    size_t starts = 0;
    for (const auto& piece : pieces) {
      FUZZ_CHECK(piece.linesBefore ==
                 static_cast<int>(std::count(joined.begin(), joined.end(), '\n')));
      joined += piece.text;
      hyper::Diagnostics pieceDiagnostics;
      size_t pieceStarts = 0;
      auto pieceDocs = hyper::parseYamlDocuments(piece.parseText(), fileName, pieceDiagnostics,
                                                 limits, piece.linesBefore, &pieceStarts);
      clean = clean && pieceDiagnostics.empty();
      starts += pieceStarts;
      for (auto& d : pieceDocs) {
        fromPieces.push_back(std::move(d));
      }
    }
    FUZZ_CHECK(joined == content);
    // The loader's condition (ManifestLoader::parseFile): every piece but the last counted one
    // document start more, its kYamlPieceEnd.
    if (clean && starts - (pieces.size() - 1) <= limits.maxDocumentsPerFile) {
      FUZZ_CHECK(diagnostics.empty());
      FUZZ_CHECK(fromPieces.size() == docs.size());
      for (size_t i = 0; i < docs.size() && i < fromPieces.size(); ++i) {
        FUZZ_CHECK(fromPieces[i].value == docs[i].value);
        FUZZ_CHECK(fromPieces[i].where.str() == docs[i].where.str());
      }
    }
  };
  checkPieces(hyper::splitYamlStreamByContent(content, 1, 1));  // a cut at every document
  checkPieces(hyper::splitYamlStreamByContent(content, 16, 128));
  return 0;
}
