#include "broker/client_wire.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "broker/output.h"

namespace hyper::broker {
namespace {

using Json = nlohmann::json;

// What the client sent before it had its own encoder, and what the daemon's parser was built for.
std::string nlohmannLine(const RunRequest& req) {
  return runRequestToJson(req).dump(-1, ' ', false, Json::error_handler_t::replace);
}

RunRequest requestWith(const std::string& text) {
  RunRequest req;
  req.requestId = "0123456789abcdef";
  req.command = "make";
  req.args = {"-j4", text, "all"};
  req.cwd = "/work/" + text;
  req.env = {{"PATH", "/usr/bin:/bin"}, {"V" + text, text}, {"CFLAGS", text + "-O2"}};
  return req;
}

struct EncodeCase {
  std::string name;
  std::string text;
};

class BrokerClientWireEncodeTest : public ::testing::TestWithParam<EncodeCase> {};

TEST_P(BrokerClientWireEncodeTest, SameBytesAsNlohmann) {
  RunRequest req = requestWith(GetParam().text);
  EXPECT_EQ(encodeRunRequest(req), nlohmannLine(req));
  req.timeoutSec = 42;
  EXPECT_EQ(encodeRunRequest(req), nlohmannLine(req));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerClientWireEncodeTest,
    ::testing::Values(
        EncodeCase{"Empty", ""}, EncodeCase{"Plain", "hello world"},
        EncodeCase{"Escapes", "q\"b\\s/\b\f\n\r\t"},
        EncodeCase{"Controls", std::string("\x01\x1f\x7f", 3)},
        EncodeCase{"Nul", std::string("a\0b", 3)},
        EncodeCase{"Utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        EncodeCase{"LoneContinuation", "a\x80z"}, EncodeCase{"Ff", "a\xffz"},
        EncodeCase{"Overlong", "\xc0\xaf"}, EncodeCase{"OverlongThree", "\xe0\x80\xaf"},
        EncodeCase{"Surrogate", "\xed\xa0\x80"}, EncodeCase{"AboveMax", "\xf4\x90\x80\x80"},
        EncodeCase{"TruncatedAtEnd", "x\xe2\x82"}, EncodeCase{"TruncatedThenAscii", "\xe2\x82Z"},
        EncodeCase{"TruncatedThenLead", "\xf0\x9f\x98\xc3\xa9"},
        EncodeCase{"TwoLeads", "\xc3\xc3"}),
    [](const ::testing::TestParamInfo<EncodeCase>& info) { return info.param.name; });

TEST(BrokerClientWireEncodeTest, RandomBytesSameAsNlohmann) {
  // Bytes drawn mostly from the ranges where UTF-8 decoders disagree.
  const std::string alphabet =
      "a\"\\\n\x01\x7f\x80\x8f\x90\x9f\xa0\xbf\xc0\xc1\xc2\xdf\xe0\xe1\xec\xed\xee\xef\xf0\xf1"
      "\xf3\xf4\xf5\xff";
  std::mt19937 rng(5);
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    int len = static_cast<int>(rng() % 12);
    for (int k = 0; k < len; ++k) {
      text += alphabet[rng() % alphabet.size()];
    }
    RunRequest req = requestWith(text);
    ASSERT_EQ(encodeRunRequest(req), nlohmannLine(req)) << Json(base64Encode(text)).dump();
  }
}

TEST(BrokerClientWireEncodeTest, DaemonParsesWhatTheClientSends) {
  RunRequest req = requestWith("\xe2\x82\xac \"x\"");
  req.timeoutSec = 7;
  auto parsed = parseRequest(encodeRunRequest(req));
  ASSERT_TRUE(parsed.isOk()) << parsed.status().message();
  ASSERT_TRUE(parsed->run.has_value());
  EXPECT_EQ(parsed->run->args, req.args);
  EXPECT_EQ(parsed->run->cwd, req.cwd);
  EXPECT_EQ(parsed->run->env, req.env);
  EXPECT_EQ(parsed->run->timeoutSec, 7);
}

TEST(BrokerClientWireFrameTest, ReadsTheDaemonsFrames) {
  auto exit = parseClientFrame(exitFrame(3, true));
  ASSERT_TRUE(exit.isOk()) << exit.status().message();
  EXPECT_EQ(exit->type, "exit");
  EXPECT_EQ(exit->code, 3);
  EXPECT_TRUE(exit->timedOut);

  auto ok = parseClientFrame(exitFrame(0, false));
  ASSERT_TRUE(ok.isOk());
  EXPECT_EQ(ok->code, 0);
  EXPECT_FALSE(ok->timedOut);

  auto error = parseClientFrame(errorFrame("no rule allows \"rm\"\n\xe2\x82\xac"));
  ASSERT_TRUE(error.isOk());
  EXPECT_EQ(error->type, "error");
  EXPECT_EQ(error->message, "no rule allows \"rm\"\n\xe2\x82\xac");

  auto queued = parseClientFrame(queuedFrame("make"));
  ASSERT_TRUE(queued.isOk());
  EXPECT_EQ(queued->type, "queued");
  EXPECT_FALSE(queued->hasCode);
}

TEST(BrokerClientWireFrameTest, OutputFramesGiveBackTheBytes) {
  // Text, control characters, a character split across reads, and bytes that are not UTF-8.
  std::vector<std::string> chunks = {"line one\n\ttab \x01\x1b[0m caf\xc3", "\xa9\n",
                                     std::string("\xff\xfe\0bin", 6), "\xf0\x9f\x98\x80 end"};
  OutputFramer framer("stderr");
  std::string wire;
  std::string expected;
  for (const auto& c : chunks) {
    wire += framer.feed(c);
    expected += c;
  }
  wire += framer.flush();
  std::string got;
  bool sawBase64 = false;
  size_t start = 0;
  while (start < wire.size()) {
    size_t nl = wire.find('\n', start);
    ASSERT_NE(nl, std::string::npos);
    auto frame = parseClientFrame(std::string_view(wire).substr(start, nl - start));
    ASSERT_TRUE(frame.isOk()) << frame.status().message();
    EXPECT_EQ(frame->type, "stderr");
    sawBase64 = sawBase64 || frame->encoding == "base64";
    auto data = clientFrameData(*frame);
    ASSERT_TRUE(data.isOk()) << data.status().message();
    got += *data;
    start = nl + 1;
  }
  EXPECT_TRUE(sawBase64);
  EXPECT_EQ(got, expected);
}

TEST(BrokerClientWireFrameTest, DecodesEveryEscapeNlohmannWrites) {
  std::string text = "\xe2\x82\xac \xf0\x9f\x98\x80 \x01 \"\\/ caf\xc3\xa9";
  // ensure_ascii: every non-ASCII character as \u escapes, surrogate pairs included.
  std::string line = Json{{"type", "stdout"}, {"data", text}}.dump(-1, ' ', true);
  auto frame = parseClientFrame(line);
  ASSERT_TRUE(frame.isOk()) << frame.status().message();
  EXPECT_EQ(frame->data, text);
  auto spaced = parseClientFrame(" { \"data\" : \"\\u0041\\/\" , \"type\" : \"stdout\" } ");
  ASSERT_TRUE(spaced.isOk()) << spaced.status().message();
  EXPECT_EQ(spaced->data, "A/");
}

TEST(BrokerClientWireFrameTest, FieldsOfOtherTypesAndUnknownFields) {
  auto frame =
      parseClientFrame(R"({"type":"exit","extra":{"a":[1,-2.5e3,{"b":null}],"c":"}"},"code":1.5,)"
                       R"("timedOut":"yes","message":7,"data":false})");
  ASSERT_TRUE(frame.isOk()) << frame.status().message();
  EXPECT_TRUE(frame->hasCode);
  EXPECT_FALSE(frame->code.has_value());
  EXPECT_FALSE(frame->timedOut);
  EXPECT_FALSE(frame->message.has_value());
  EXPECT_FALSE(frame->data.has_value());

  auto big = parseClientFrame(R"({"type":"exit","code":99999999999999999999})");
  ASSERT_TRUE(big.isOk());
  EXPECT_FALSE(big->code.has_value());
  auto negative = parseClientFrame(R"({"type":"exit","code":-9223372036854775808})");
  ASSERT_TRUE(negative.isOk());
  EXPECT_EQ(negative->code, INT64_MIN);
}

TEST(BrokerClientWireFrameTest, UnknownEncodingSaysWhatFrameDataSays) {
  for (const char* line :
       {R"({"type":"stdout","data":"x","encoding":"gzip"})",
        R"({"type":"stdout","data":"x","encoding":5})",
        R"({"type":"stdout","data":"x","encoding":"base64"})",
        R"({"type":"stdout","data":"eA==","encoding":"base64"})",
        R"({"type":"stdout","data":"x","encoding":"utf-8"})", R"({"type":"stdout","data":7})"}) {
    auto frame = parseClientFrame(line);
    ASSERT_TRUE(frame.isOk()) << line;
    auto ours = clientFrameData(*frame);
    auto theirs = frameData(Json::parse(line));
    ASSERT_EQ(ours.isOk(), theirs.isOk()) << line;
    if (ours.isOk()) {
      EXPECT_EQ(*ours, *theirs) << line;
    } else {
      EXPECT_EQ(ours.status().message(), theirs.status().message()) << line;
    }
  }
}

struct BadFrameCase {
  std::string name;
  std::string line;
};

class BrokerClientWireBadFrameTest : public ::testing::TestWithParam<BadFrameCase> {};

TEST_P(BrokerClientWireBadFrameTest, IsAnError) {
  EXPECT_FALSE(parseClientFrame(GetParam().line).isOk());
  // nlohmann agrees that these are not a frame (not JSON, not an object, or no string type).
  Json j = Json::parse(GetParam().line, nullptr, false);
  EXPECT_TRUE(j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerClientWireBadFrameTest,
    ::testing::Values(BadFrameCase{"Empty", ""}, BadFrameCase{"Array", "[]"},
                      BadFrameCase{"Unterminated", "{"}, BadFrameCase{"NoType", R"({"code":1})"},
                      BadFrameCase{"TypeNotString", R"({"type":1})"},
                      BadFrameCase{"TrailingText", R"({"type":"exit"} x)"},
                      BadFrameCase{"TrailingComma", R"({"type":"exit",})"},
                      BadFrameCase{"RawControl", "{\"type\":\"a\x01\"}"},
                      BadFrameCase{"LoneSurrogate", R"({"type":"a\ud800"})"},
                      BadFrameCase{"LowSurrogateFirst", R"({"type":"a\udc00"})"},
                      BadFrameCase{"BadEscape", R"({"type":"a\q"})"},
                      BadFrameCase{"ShortUnicodeEscape", R"({"type":"a\u12"})"},
                      BadFrameCase{"LeadingZero", R"({"type":"exit","code":01})"},
                      BadFrameCase{"BareMinus", R"({"type":"exit","code":-})"},
                      BadFrameCase{"BadWord", R"({"type":"exit","timedOut":tru})"},
                      BadFrameCase{"UnclosedNested", R"({"type":"exit","x":[1,2})"},
                      BadFrameCase{"MissingColon", R"({"type" "exit"})"}),
    [](const ::testing::TestParamInfo<BadFrameCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::broker
