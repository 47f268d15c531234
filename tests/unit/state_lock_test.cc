#include "reconciler/state_lock.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace hyper {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "hyper-lock-XXXXXX").string();
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string refusal(const std::string& dir, const std::string& holder) {
  return "state directory " + dir + " is locked by another writer (" + holder +
         "); two writers are never interleaved — wait for it to finish";
}

TEST(StateLockTest, RecordsHolderAndRefusesSecondWriter) {
  TempDir tmp;
  auto first = StateLock::acquire(tmp.path(), "hyperctl apply");
  ASSERT_TRUE(first.isOk()) << first.status().message();
  std::string pid = std::to_string(::getpid());
  EXPECT_EQ(readFile(tmp.path() + "/lock"), "pid=" + pid + " purpose=hyperctl apply\n");

  // A second open file description is a second writer, even in the same process.
  auto second = StateLock::acquire(tmp.path(), "hyperd");
  ASSERT_FALSE(second.isOk());
  EXPECT_EQ(second.status().message(), refusal(tmp.path(), "pid " + pid + ", hyperctl apply"));
}

TEST(StateLockTest, ReleasedByDestructor) {
  TempDir tmp;
  {
    auto first = StateLock::acquire(tmp.path(), "one");
    ASSERT_TRUE(first.isOk()) << first.status().message();
  }
  // The holder is cleared on release, so a stale pid is never reported.
  EXPECT_EQ(readFile(tmp.path() + "/lock"), "");
  auto second = StateLock::acquire(tmp.path(), "two");
  ASSERT_TRUE(second.isOk()) << second.status().message();
  EXPECT_EQ(readFile(tmp.path() + "/lock"), "pid=" + std::to_string(::getpid()) + " purpose=two\n");
}

TEST(StateLockTest, HeldByAnotherProcessUntilItDies) {
  TempDir tmp;
  int ready[2];
  int release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    ::close(release[1]);
    auto lock = StateLock::acquire(tmp.path(), "hyperd reconcile");
    char ok = lock.isOk() ? 'y' : 'n';
    (void)!::write(ready[1], &ok, 1);
    char c;
    (void)!::read(release[0], &c, 1);  // returns when the parent closes its end
    // No destructor: the kernel alone must release the lock when the process dies.
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');

  auto refused = StateLock::acquire(tmp.path(), "hyperctl apply");
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.status().message(),
            refusal(tmp.path(), "pid " + std::to_string(child) + ", hyperd reconcile"));

  ::close(release[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ::close(ready[0]);
  auto acquired = StateLock::acquire(tmp.path(), "hyperctl apply");
  EXPECT_TRUE(acquired.isOk()) << acquired.status().message();
}

TEST(StateLockTest, CreatesMissingDirectory) {
  TempDir tmp;
  std::string dir = tmp.path() + "/a/b";
  auto lock = StateLock::acquire(dir, "test");
  ASSERT_TRUE(lock.isOk()) << lock.status().message();
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(StateLockTest, UnreadableHolderStillRefuses) {
  TempDir tmp;
  auto first = StateLock::acquire(tmp.path(), "x");
  ASSERT_TRUE(first.isOk());
  // Someone scribbled over the file: the lock still holds, the message degrades.
  std::ofstream(tmp.path() + "/lock") << "garbage";
  auto second = StateLock::acquire(tmp.path(), "y");
  ASSERT_FALSE(second.isOk());
  EXPECT_EQ(second.status().message(), refusal(tmp.path(), "holder unknown"));
}

TEST(StateLockTest, PurposeIsKeptOnOneLine) {
  TempDir tmp;
  auto first = StateLock::acquire(tmp.path(), "multi\nline");
  ASSERT_TRUE(first.isOk());
  EXPECT_EQ(readFile(tmp.path() + "/lock"),
            "pid=" + std::to_string(::getpid()) + " purpose=multi line\n");
}

TEST(StateLockTest, ErrorWhenStateDirIsAFile) {
  TempDir tmp;
  std::string file = tmp.path() + "/file";
  std::ofstream(file) << "x";
  auto lock = StateLock::acquire(file, "test");
  ASSERT_FALSE(lock.isOk());
  EXPECT_EQ(lock.status().message(), "lock state directory " + file +
                                         " <- create state directory " + file +
                                         " <- exists and is not a directory");
}

TEST(StateLockTest, LockFileIsCloseOnExec) {
  TempDir tmp;
  auto lock = StateLock::acquire(tmp.path(), "test");
  ASSERT_TRUE(lock.isOk());
  // Find our descriptor for the lock file and check FD_CLOEXEC: children (QEMU) must not
  // inherit the lock.
  std::string target = std::filesystem::canonical(tmp.path() + "/lock").string();
  bool found = false;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto link = std::filesystem::read_symlink(e.path(), ec);
    if (ec || link.string() != target) {
      continue;
    }
    found = true;
    std::string info = readFile("/proc/self/fdinfo/" + e.path().filename().string());
    auto pos = info.find("flags:");
    ASSERT_NE(pos, std::string::npos);
    long flags = std::strtol(info.c_str() + pos + 6, nullptr, 8);
    EXPECT_NE(flags & 02000000, 0) << "O_CLOEXEC not set: " << info;
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

struct DirCase {
  std::string name;
  mode_t mode;
  uid_t owner;        // 0: whoever runs the test
  std::string error;  // "" when accepted
};

class StateDirModeTest : public ::testing::TestWithParam<DirCase> {};

// Whoever can write the state dir can swap the inventory, the lock or the token: a directory
// writable by group or others, or owned by another user, is refused with what was found.
TEST_P(StateDirModeTest, RefusesWhatIsNotPrivate) {
  const DirCase& c = GetParam();
  TempDir tmp;
  const std::string dir = tmp.path() + "/state";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), c.mode), 0);
  if (c.owner != 0) {
    ASSERT_EQ(::chown(dir.c_str(), c.owner, c.owner), 0) << "needs root";
  }
  auto lock = StateLock::acquire(dir, "test");
  if (c.error.empty()) {
    EXPECT_TRUE(lock.isOk()) << lock.status().message();
    return;
  }
  ASSERT_FALSE(lock.isOk());
  EXPECT_NE(lock.status().message().find(dir + c.error), std::string::npos)
      << lock.status().message();
  EXPECT_FALSE(std::filesystem::exists(dir + "/lock")) << "a lock was made in a refused dir";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, StateDirModeTest,
    ::testing::Values(
        DirCase{"Private0700", 0700, 0, ""}, DirCase{"ReadableByOthers0755", 0755, 0, ""},
        DirCase{"WorldWritable0777", 0777, 0,
                " has mode 0777, writable by group or others; expected no group or other write"},
        DirCase{"GroupWritable0770", 0770, 0, " has mode 0770, writable by group or others"},
        DirCase{"OthersWritableOnly0702", 0702, 0, " has mode 0702, writable by group or others"},
        DirCase{"OwnedByNobody", 0700, 65534,
                " is owned by uid 65534 (mode 0700); expected owned by uid "}),
    [](const auto& info) { return info.param.name; });

// A symlink planted as the lock is refused, and its target is left untouched.
TEST(StateLockTest, SymlinkedLockIsRefused) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/state";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  const std::string target = tmp.path() + "/precious";
  std::ofstream(target) << "keep me\n";
  ASSERT_EQ(::symlink(target.c_str(), (dir + "/lock").c_str()), 0);
  auto lock = StateLock::acquire(dir, "test");
  ASSERT_FALSE(lock.isOk());
  EXPECT_NE(lock.status().message().find(dir + "/lock is a symbolic link; refused"),
            std::string::npos)
      << lock.status().message();
  EXPECT_EQ(readFile(target), "keep me\n");
}

}  // namespace
}  // namespace hyper
