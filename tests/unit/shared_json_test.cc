#include "reconciler/shared_json.h"

#include <gtest/gtest.h>

#include <sstream>

namespace hyper {
namespace {

TEST(SharedJsonTest, CopiesShareOneTreeUntilOneIsWritten) {
  SharedJson a = Json{{"cidr", "10.0.0.0/24"}, {"mtu", 1500}};
  SharedJson b = a;
  EXPECT_TRUE(b.sharesWith(a));
  EXPECT_EQ(&a.get(), &b.get());
  b.mut()["mtu"] = 9000;  // b gets a tree of its own first
  EXPECT_FALSE(b.sharesWith(a));
  EXPECT_EQ(a["mtu"], 1500);
  EXPECT_EQ(b["mtu"], 9000);
  const Json* own = &b.get();
  b.mut()["nat"] = true;  // not shared: written in place
  EXPECT_EQ(&b.get(), own);
}

TEST(SharedJsonTest, ShareIfEqualTakesTheOtherTreeOnlyForAnEqualValue) {
  SharedJson record = Json{{"n", 1}};
  SharedJson object = Json{{"n", 1}};
  SharedJson other = Json{{"n", 2}};
  EXPECT_FALSE(object.sharesWith(record));
  EXPECT_TRUE(object == record);
  EXPECT_TRUE(object.shareIfEqual(record));
  EXPECT_TRUE(object.sharesWith(record));
  EXPECT_FALSE(other.shareIfEqual(record));
  EXPECT_FALSE(other.sharesWith(record));
  EXPECT_EQ(other["n"], 2);
  SharedJson empty;
  EXPECT_FALSE(empty.shareIfEqual(SharedJson()));  // two nulls hold no tree to share
}

TEST(SharedJsonTest, ReadsAsTheJsonItHolds) {
  SharedJson none;
  EXPECT_TRUE(none->is_null());
  EXPECT_EQ(none, Json());
  SharedJson v = Json{{"a", {1, 2}}};
  const Json& j = v;
  EXPECT_EQ(j["a"][1], 2);
  EXPECT_EQ(v->value("b", 7), 7);
  EXPECT_NE(v, Json::object());
  std::ostringstream out;
  out << v;
  EXPECT_EQ(out.str(), R"({"a":[1,2]})");
}

}  // namespace
}  // namespace hyper
