// A build log's lines as the typed events of GET /v1/builds/NAME/events.
#include "providers/build/build_events.h"

#include <gtest/gtest.h>

namespace hyper::providers::build {
namespace {

using Json = nlohmann::json;

TEST(BuildLogEventTest, StepBoundariesAreStepEvents) {
  EXPECT_EQ(buildLogEvent("step 3 start", 7),
            (Json{{"type", "step"}, {"step", 3}, {"phase", "start"}, {"line", 7}}));
  EXPECT_EQ(buildLogEvent("step 0 exit 2", 1),
            (Json{{"type", "step"}, {"step", 0}, {"phase", "exit"}, {"code", 2}, {"line", 1}}));
  EXPECT_EQ(buildLogEvent("step 12 signal 9", 2),
            (Json{{"type", "step"}, {"step", 12}, {"phase", "signal"}, {"code", 9}, {"line", 2}}));
}

TEST(BuildLogEventTest, StepOutputIsALogEventWithItsStream) {
  EXPECT_EQ(
      buildLogEvent("[1] cc -c a.c", 4),
      (Json{{"type", "log"}, {"step", 1}, {"stream", "out"}, {"text", "cc -c a.c"}, {"line", 4}}));
  EXPECT_EQ(buildLogEvent("[1!] warning: unused", 5)["stream"], "err");
  EXPECT_EQ(buildLogEvent("[1] ", 5)["text"], "");
}

TEST(BuildLogEventTest, WhatOnlyLooksLikeAStepIsPlainLog) {
  for (const char* line : {"step one start", "step 1 exit", "step 1 exit 2x", "step 1 started",
                           "step 99999999 start", "[x] text", "[1]text", "[1!!] text", "[] a"}) {
    Json e = buildLogEvent(line, 1);
    EXPECT_EQ(e["type"], "log") << line;
    EXPECT_FALSE(e.contains("step")) << line;
    EXPECT_EQ(e["text"], line);
  }
}

TEST(BuildLogEventTest, TheBuildsOwnLinesAreStatusEvents) {
  EXPECT_EQ(buildLogEvent("build app (script) key ab", 1)["state"], "started");
  EXPECT_EQ(buildLogEvent("built in 1200 ms", 9)["state"], "succeeded");
  EXPECT_EQ(buildLogEvent("failed: step 1 [make] exited with code 2", 9)["state"], "failed");
  EXPECT_EQ(buildLogEvent("apply: cached (the store has key ab)", 9)["state"], "cached");
  EXPECT_EQ(buildLogEvent("builder up in 5200 ms", 3)["type"], "log");
}

TEST(BuildLogEventTest, OnlyTheEndOfABuildIsFinal) {
  EXPECT_TRUE(isFinalBuildLine("built in 3 ms"));
  EXPECT_TRUE(isFinalBuildLine("failed: no such commit"));
  EXPECT_TRUE(isFinalBuildLine("apply: cached (the store has key ab)"));
  EXPECT_FALSE(isFinalBuildLine("build app (script) key ab"));
  EXPECT_FALSE(isFinalBuildLine("[0] failed: in the step's own output"));
  EXPECT_FALSE(isFinalBuildLine("step 1 exit 1"));
}

}  // namespace
}  // namespace hyper::providers::build
