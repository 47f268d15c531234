// What hyper keeps and prints of a guest's output: escaping, rotation, the bounded line buffer.
#include "providers/vmm/guest_log.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "base/text_escape.h"
#include "providers/vmm/vm_driver.h"

namespace hyper::providers::vmm {
namespace {

namespace fs = std::filesystem;

struct EscapeCase {
  std::string name;
  std::string in;
  std::string out;
};

class EscapeControlTest : public ::testing::TestWithParam<EscapeCase> {};

TEST_P(EscapeControlTest, Escapes) { EXPECT_EQ(escapeControl(GetParam().in), GetParam().out); }

INSTANTIATE_TEST_SUITE_P(
    Cases, EscapeControlTest,
    ::testing::Values(EscapeCase{"ClearScreenNulAndInvalidUtf8",
                                 std::string("a\x1b[2Jb") + std::string(1, '\0') + "c\xff\xc3(d",
                                 "a\\x1b[2Jb\\x00c\\xff\\xc3(d"},
                      EscapeCase{"TabAndUtf8Kept",
                                 "caf\xc3\xa9\tna\xc3\xafve \xe2\x86\x92 \xf0\x9f\x98\x80",
                                 "caf\xc3\xa9\tna\xc3\xafve \xe2\x86\x92 \xf0\x9f\x98\x80"},
                      EscapeCase{"NewlineCarriageReturnDel", "a\nb\rc\x7f", "a\\x0ab\\x0dc\\x7f"},
                      EscapeCase{"BoundaryBytesKept", " ~", " ~"},
                      EscapeCase{"UnitSeparatorEscaped", "\x1f", "\\x1f"},
                      EscapeCase{"BackslashCannotForgeAnEscape", "\\x1b", "\\\\x1b"},
                      EscapeCase{"OverlongSlashEscaped", "\xc0\xaf", "\\xc0\\xaf"},
                      EscapeCase{"SurrogateEscaped", "\xed\xa0\x80", "\\xed\\xa0\\x80"},
                      EscapeCase{"TruncatedSequenceAtEnd", "\xe2\x86", "\\xe2\\x86"},
                      EscapeCase{"AboveMaxCodePoint", "\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},
                      EscapeCase{"MaxCodePointKept", "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"}),
    [](const auto& info) { return info.param.name; });

class GuestLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-guestlog-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  std::string dir_;
};

TEST_F(GuestLogTest, RotatesOnlyPastTheCap) {
  const std::string log = dir_ + "/console.log";
  std::ofstream(log, std::ios::binary) << "0123456789";
  auto r = rotateLog(log, 10);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_FALSE(*r) << "a log exactly at its cap was rotated";
  EXPECT_EQ(read(log), "0123456789");

  std::ofstream(log, std::ios::app | std::ios::binary) << "A";
  r = rotateLog(log, 10);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_TRUE(*r);
  EXPECT_EQ(read(log), "");
  EXPECT_EQ(read(log + ".1"), "123456789A") << "not the newest cap bytes";

  // A second rotation replaces the old file: at most one is kept.
  std::ofstream(log, std::ios::app | std::ios::binary) << "bcdefghijklm";
  r = rotateLog(log, 10);
  ASSERT_TRUE(r.isOk() && *r);
  EXPECT_EQ(read(log + ".1"), "defghijklm");
  EXPECT_FALSE(fs::exists(log + ".2"));
  EXPECT_FALSE(fs::exists(log + ".1.tmp"));
}

TEST_F(GuestLogTest, AMissingLogIsNotAnError) {
  auto r = rotateLog(dir_ + "/nope.log", 10);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_FALSE(*r);
}

TEST_F(GuestLogTest, AWriterWithAppendGoesOnAtTheNewEnd) {
  // QEMU opens the log with append=on (O_APPEND): after the truncate its next write lands at 0,
  // not at its old offset (which would leave a sparse file as large as before).
  const std::string log = dir_ + "/console.log";
  std::ofstream writer(log, std::ios::app | std::ios::binary);
  writer << std::string(100, 'x') << std::flush;
  ASSERT_TRUE(rotateLog(log, 50).isOk());
  writer << "next\n" << std::flush;
  EXPECT_EQ(read(log), "next\n");
}

TEST(LineSplitterTest, KeepsTheTailOfAnEndlessLine) {
  LineSplitter lines(8);
  std::vector<std::string> got;
  auto collect = [&](std::string_view l) {
    got.emplace_back(l);
    return false;
  };
  lines.feed("abcdefghij", collect);
  lines.feed("klmnopqrst", collect);
  EXPECT_EQ(lines.partialSize(), 8u);
  lines.feed("uv\nshort\nlast", collect);
  EXPECT_EQ(got, (std::vector<std::string>{"opqrstuv", "short"}));
  EXPECT_EQ(lines.partialSize(), 4u);
}

TEST(LineSplitterTest, StopsAtTheFirstMatch) {
  LineSplitter lines;
  int seen = 0;
  EXPECT_TRUE(lines.feed("a\nready\nb\n", [&](std::string_view l) {
    ++seen;
    return l == "ready";
  }));
  EXPECT_EQ(seen, 2);
}

TEST_F(GuestLogTest, LastLinesAreEscaped) {
  const std::string log = dir_ + "/console.log";
  std::ofstream(log, std::ios::binary) << "one\r\n\x1b]0;pwned\x07two\n";
  EXPECT_EQ(lastLines(log, 5), "one\n\\x1b]0;pwned\\x07two\n");
  EXPECT_EQ(lastLines(log, 1), "\\x1b]0;pwned\\x07two\n");
}

TEST_F(GuestLogTest, LogHasLineWantsAWholeLine) {
  const std::string log = dir_ + "/console.log";
  std::ofstream(log, std::ios::binary)
      << std::string(200000, 'z') << "hyper-ready\nhyper-ready2\r\n";
  EXPECT_FALSE(logHasLine(log, "hyper-ready")) << "matched inside a longer line";
  EXPECT_TRUE(logHasLine(log, "hyper-ready2"));
  EXPECT_FALSE(logHasLine(log, "hyper-ready3"));
}

}  // namespace
}  // namespace hyper::providers::vmm

namespace hyper {
namespace {

TEST(QuotedExcerptTest, EscapedCutShortNeverInsideAnEscape) {
  EXPECT_EQ(quotedExcerpt("plain"), "\"plain\"");
  EXPECT_EQ(quotedExcerpt("a\x1b[31mb"), "\"a\\x1b[31mb\"");
  EXPECT_EQ(quotedExcerpt(std::string(100, 'x'), 10), "\"" + std::string(10, 'x') + "...\"");
  // Ten bytes that each escape to four characters: cut at 10 characters, before the third
  // escape, not inside it.
  EXPECT_EQ(quotedExcerpt(std::string(10, '\x01'), 10), "\"\\x01\\x01...\"");
}

}  // namespace
}  // namespace hyper
