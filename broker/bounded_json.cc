#include "broker/bounded_json.h"

#include <string>

namespace hyper::broker {

using Json = nlohmann::json;

namespace {

// Counts nesting and stops the parse (returns false) at the first container too deep, or at the
// first syntax error, remembering where.
class DepthCheck {
 public:
  explicit DepthCheck(int maxDepth) : maxDepth_(maxDepth) {}

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(Json::number_integer_t) { return true; }
  bool number_unsigned(Json::number_unsigned_t) { return true; }
  bool number_float(Json::number_float_t, const Json::string_t&) { return true; }
  bool string(Json::string_t&) { return true; }
  bool binary(Json::binary_t&) { return true; }
  bool key(Json::string_t&) { return true; }
  bool start_object(std::size_t) { return enter(); }
  bool start_array(std::size_t) { return enter(); }
  bool end_object() { return leave(); }
  bool end_array() { return leave(); }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
    // The exception's text quotes the last token read: it is the caller's, so only the offset is
    // kept.
    syntaxErrorAt_ = position;
    return false;
  }

  bool tooDeep() const { return tooDeep_; }
  size_t syntaxErrorAt() const { return syntaxErrorAt_; }

 private:
  bool enter() {
    if (++depth_ > maxDepth_) {
      tooDeep_ = true;
      return false;
    }
    return true;
  }
  bool leave() {
    --depth_;
    return true;
  }

  int maxDepth_;
  int depth_ = 0;
  bool tooDeep_ = false;
  size_t syntaxErrorAt_ = 0;
};

}  // namespace

Result<Json> parseBoundedJson(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.maxBytes) {
    return Status::error("longer than " + std::to_string(limits.maxBytes) + " bytes");
  }
  DepthCheck check(limits.maxDepth);
  bool ok = Json::sax_parse(text.begin(), text.end(), &check, Json::input_format_t::json,
                            /*strict=*/true);
  if (check.tooDeep()) {
    return Status::error("nested deeper than " + std::to_string(limits.maxDepth) +
                         " levels of objects and arrays");
  }
  if (!ok) {
    return Status::error("not valid JSON (syntax error at byte " +
                         std::to_string(check.syntaxErrorAt()) + ")");
  }
  Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return Status::error("not valid JSON");
  }
  return doc;
}

}  // namespace hyper::broker
