#include "broker/output.h"

#include <gtest/gtest.h>

#include <string>

namespace hyper::broker {
namespace {

using Json = nlohmann::json;

struct Utf8Case {
  std::string name;
  std::string bytes;
  bool valid;
};

class BrokerUtf8Test : public ::testing::TestWithParam<Utf8Case> {};

TEST_P(BrokerUtf8Test, Validates) { EXPECT_EQ(isValidUtf8(GetParam().bytes), GetParam().valid); }

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerUtf8Test,
    ::testing::Values(Utf8Case{"Ascii", "hello\n", true}, Utf8Case{"Empty", "", true},
                      Utf8Case{"TwoByte", "caf\xc3\xa9", true},
                      Utf8Case{"FourByte", "\xf0\x9f\x98\x80", true},
                      Utf8Case{"LoneContinuation", "\x80", false},
                      Utf8Case{"Overlong", "\xc0\xaf", false},
                      Utf8Case{"OverlongThree", "\xe0\x80\xaf", false},
                      Utf8Case{"Surrogate", "\xed\xa0\x80", false},
                      Utf8Case{"AboveMax", "\xf4\x90\x80\x80", false},
                      Utf8Case{"Truncated", "\xe2\x82", false}, Utf8Case{"Ff", "\xff", false}),
    [](const ::testing::TestParamInfo<Utf8Case>& info) { return info.param.name; });

TEST(BrokerBase64Test, RoundTripsEveryLengthAndByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all += static_cast<char>(i);
  }
  for (size_t len = 0; len <= all.size(); ++len) {
    std::string data = all.substr(0, len);
    auto back = base64Decode(base64Encode(data));
    ASSERT_TRUE(back.isOk()) << back.status().message();
    ASSERT_EQ(*back, data) << "length " << len;
  }
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_FALSE(base64Decode("Zm9").isOk());
  EXPECT_FALSE(base64Decode("Zm!v").isOk());
}

// Feeds `chunks` through a framer and reassembles the data from the frames, as the client does.
std::string reassemble(const std::vector<std::string>& chunks, std::vector<Json>* frames) {
  OutputFramer framer("stdout");
  std::string wire;
  for (const auto& c : chunks) {
    wire += framer.feed(c);
  }
  wire += framer.flush();
  std::string data;
  size_t pos = 0;
  while (pos < wire.size()) {
    size_t nl = wire.find('\n', pos);
    Json frame = Json::parse(wire.substr(pos, nl - pos));
    EXPECT_EQ(frame["type"], "stdout");
    frames->push_back(frame);
    auto bytes = frameData(frame);
    EXPECT_TRUE(bytes.isOk());
    data += *bytes;
    pos = nl + 1;
  }
  return data;
}

TEST(BrokerOutputFramerTest, TextSplitInsideACharacterStaysText) {
  std::vector<Json> frames;
  // "é" (c3 a9) and "😀" (f0 9f 98 80) each split across reads.
  std::string data = reassemble({"caf\xc3", "\xa9 \xf0\x9f", "\x98\x80!"}, &frames);
  EXPECT_EQ(data, "caf\xc3\xa9 \xf0\x9f\x98\x80!");
  for (const auto& f : frames) {
    EXPECT_FALSE(f.contains("encoding")) << f.dump();
  }
}

TEST(BrokerOutputFramerTest, BinaryGoesAsBase64Losslessly) {
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all += static_cast<char>(i);
  }
  std::vector<Json> frames;
  std::string data = reassemble({all.substr(0, 100), all.substr(100)}, &frames);
  EXPECT_EQ(data, all);
  bool sawBase64 = false;
  for (const auto& f : frames) {
    sawBase64 = sawBase64 || f.value("encoding", "") == "base64";
  }
  EXPECT_TRUE(sawBase64);
}

TEST(BrokerOutputFramerTest, TruncatedCharacterAtEndIsFlushedAsBase64) {
  std::vector<Json> frames;
  std::string data = reassemble({"ok\xe2\x82"}, &frames);
  EXPECT_EQ(data, "ok\xe2\x82");
}

TEST(BrokerFramesTest, ExitAndErrorFrames) {
  EXPECT_EQ(Json::parse(exitFrame(137, false)),
            Json::parse(R"({"type":"exit","code":137,"timedOut":false})"));
  EXPECT_EQ(Json::parse(errorFrame("no"))["message"], "no");
  EXPECT_EQ(exitFrame(0, true).back(), '\n');
}

}  // namespace
}  // namespace hyper::broker
