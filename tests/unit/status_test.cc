#include "base/status.h"

#include <gtest/gtest.h>

namespace hyper {
namespace {

Status failing() { return Status::error("ioctl TUNSETIFF: Operation not permitted"); }

Status wrapper() {
  HYPER_RETURN_IF_ERROR(failing().withContext("create tap vm-web0"));
  return Status::ok();
}

Result<int> parsed(bool good) {
  if (!good) {
    return Status::error("not a number");
  }
  return 42;
}

Result<int> doubled(bool good) {
  HYPER_ASSIGN_OR_RETURN(int v, parsed(good));
  return v * 2;
}

TEST(StatusTest, ChainsCauseOutward) {
  Status s = wrapper();
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(s.message(), "create tap vm-web0 <- ioctl TUNSETIFF: Operation not permitted");
  EXPECT_TRUE(Status::ok().withContext("x").isOk());
}

TEST(StatusTest, AssignOrReturnPropagates) {
  auto good = doubled(true);
  ASSERT_TRUE(good.isOk());
  EXPECT_EQ(*good, 84);
  auto bad = doubled(false);
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().message(), "not a number");
}

}  // namespace
}  // namespace hyper
