#include "reconciler/inventory.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace hyper {
namespace {

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "hyper-inv-XXXXXX").string();
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

ManagedRecord record(const std::string& kind, const std::string& name) {
  ManagedRecord r;
  r.id = {kind, name};
  r.provider = "net";
  r.labels = {{"app", "web"}, {"tier", "front"}};
  r.spec = {{"cidr", "10.77.0.0/24"}, {"mtu", 1500}, {"nat", {{"enabled", true}}}};
  r.specHash = "abc123";
  r.handles = {{"bridge", "hb-" + name}};
  r.fingerprint = "fp-" + name;
  r.revision = "3f1c2a";
  r.appliedAt = 1700000000;
  return r;
}

void expectSameRecord(const ManagedRecord& got, const ManagedRecord& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.provider, want.provider);
  EXPECT_EQ(got.labels, want.labels);
  EXPECT_EQ(got.spec, want.spec);
  EXPECT_EQ(got.specHash, want.specHash);
  EXPECT_EQ(got.handles, want.handles);
  EXPECT_EQ(got.fingerprint, want.fingerprint);
  EXPECT_EQ(got.revision, want.revision);
  EXPECT_EQ(got.appliedAt, want.appliedAt);
}

std::unique_ptr<Inventory> openOrDie(const std::string& dir) {
  auto inv = Inventory::open(dir);
  EXPECT_TRUE(inv.isOk()) << inv.status().message();
  return inv.isOk() ? std::move(inv).value() : nullptr;
}

PlanAction actionFor(ActionType type, const std::string& name) {
  PlanAction a;
  a.type = type;
  a.id = {"Network", name};
  return a;
}

// Reads a pragma through a second connection, as another process would see the file.
std::string pragma(const std::string& dbPath, const std::string& name) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(dbPath.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  std::string sql = "PRAGMA " + name;
  std::string out;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

TEST(InventoryTest, OpenCreatesPrivateStateDirectoryAndSchema) {
  TempDir tmp;
  std::string dir = tmp.path() + "/var/lib/hyper";
  auto inv = openOrDie(dir);
  ASSERT_TRUE(inv);
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(std::filesystem::exists(dir + "/state.db"));
  EXPECT_EQ(pragma(dir + "/state.db", "journal_mode"), "wal");
  EXPECT_EQ(pragma(dir + "/state.db", "user_version"), "5");
}

TEST(InventoryTest, PutGetListRemoveRoundTrip) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);

  auto missing = inv->get({"Network", "lab"});
  ASSERT_TRUE(missing.isOk()) << missing.status().message();
  EXPECT_FALSE(missing->has_value());

  ManagedRecord lab = record("Network", "lab");
  ManagedRecord web = record("VM", "web");
  ManagedRecord pol = record("NetworkPolicy", "deny");
  pol.handles = nullptr;
  pol.labels.clear();
  for (const auto* r : {&web, &lab, &pol}) {
    ASSERT_TRUE(inv->put(*r).isOk());
  }

  auto got = inv->get({"Network", "lab"});
  ASSERT_TRUE(got.isOk()) << got.status().message();
  ASSERT_TRUE(got->has_value());
  expectSameRecord(**got, lab);

  auto all = inv->list();
  ASSERT_TRUE(all.isOk()) << all.status().message();
  ASSERT_EQ(all->size(), 3u);
  // Sorted by kind, then name.
  EXPECT_EQ((*all)[0].id, lab.id);
  EXPECT_EQ((*all)[1].id, pol.id);
  EXPECT_EQ((*all)[2].id, web.id);
  expectSameRecord((*all)[1], pol);

  // put replaces.
  lab.spec.mut()["mtu"] = 9000;
  lab.revision = "next";
  ASSERT_TRUE(inv->put(lab).isOk());
  got = inv->get({"Network", "lab"});
  ASSERT_TRUE(got.isOk() && got->has_value());
  expectSameRecord(**got, lab);
  EXPECT_EQ(inv->list()->size(), 3u);

  ASSERT_TRUE(inv->remove(lab.id).isOk());
  EXPECT_FALSE(inv->get(lab.id)->has_value());
  EXPECT_EQ(inv->list()->size(), 2u);
  // Removing what is not there is fine: deletes are idempotent.
  EXPECT_TRUE(inv->remove(lab.id).isOk());
}

// A record written before driftPolicy moved to the envelope reads back without it.
TEST(InventoryTest, ARecordedSpecLosesTheEnvelopesDriftPolicy) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  ManagedRecord old = record("VM", "web");
  old.spec.mut()["driftPolicy"] = "alert";
  ASSERT_TRUE(inv->put(old).isOk());
  auto got = inv->get({"VM", "web"});
  ASSERT_TRUE(got.isOk() && got->has_value());
  EXPECT_FALSE((*got)->spec->contains("driftPolicy"));
  EXPECT_EQ((*got)->spec["mtu"], 1500);
}

TEST(InventoryTest, ValuesAreBoundNotSpliced) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  ManagedRecord evil = record("Network", "x'); DROP TABLE objects; --");
  evil.labels["quote"] = "it's \"quoted\"\n";
  evil.revision = "'";
  ASSERT_TRUE(inv->put(evil).isOk());
  auto got = inv->get(evil.id);
  ASSERT_TRUE(got.isOk()) << got.status().message();
  ASSERT_TRUE(got->has_value());
  expectSameRecord(**got, evil);
  EXPECT_EQ(inv->list()->size(), 1u);
}

TEST(InventoryTest, JournalBeginEndAndUnfinished) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);

  auto a = inv->journalBegin("rc-1", actionFor(ActionType::Create, "a"));
  auto b = inv->journalBegin("rc-1", actionFor(ActionType::Delete, "b"));
  auto c = inv->journalBegin("rc-1", actionFor(ActionType::Replace, "c"));
  ASSERT_TRUE(a.isOk() && b.isOk() && c.isOk()) << a.status().message();
  EXPECT_LT(*a, *b);
  EXPECT_LT(*b, *c);

  auto unfinished = inv->unfinishedJournal();
  ASSERT_TRUE(unfinished.isOk()) << unfinished.status().message();
  ASSERT_EQ(unfinished->size(), 3u);
  EXPECT_EQ((*unfinished)[0].id, *a);
  EXPECT_EQ((*unfinished)[0].reconcileId, "rc-1");
  EXPECT_EQ((*unfinished)[0].object, (ObjectId{"Network", "a"}));
  EXPECT_EQ((*unfinished)[0].action, "create");
  EXPECT_EQ((*unfinished)[0].phase, "started");
  EXPECT_GT((*unfinished)[0].startedAt, 0);
  EXPECT_EQ((*unfinished)[0].finishedAt, 0);

  ASSERT_TRUE(inv->journalEnd(*a, true, "").isOk());
  ASSERT_TRUE(inv->journalEnd(*b, false, "delete Network/b <- busy").isOk());
  unfinished = inv->unfinishedJournal();
  ASSERT_TRUE(unfinished.isOk());
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].id, *c);
  EXPECT_EQ((*unfinished)[0].action, "replace");

  auto recent = inv->journal(2);
  ASSERT_TRUE(recent.isOk()) << recent.status().message();
  ASSERT_EQ(recent->size(), 2u);
  // Newest first.
  EXPECT_EQ((*recent)[0].id, *c);
  EXPECT_EQ((*recent)[1].id, *b);
  EXPECT_EQ((*recent)[1].phase, "failed");
  EXPECT_EQ((*recent)[1].detail, "delete Network/b <- busy");
  EXPECT_GE((*recent)[1].finishedAt, (*recent)[1].startedAt);

  auto all = inv->journal(-1);
  ASSERT_TRUE(all.isOk());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[2].phase, "succeeded");

  Status missing = inv->journalEnd(*c + 100, true, "");
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.message(),
            "inventory journal end #" + std::to_string(*c + 100) + " <- no such journal entry");
}

// The writes of a batch of actions: one transaction each, all or nothing. A trigger made through a
// second connection refuses one row, as a full disk or a damaged file would.
TEST(InventoryTest, ManyWritesAreOneTransactionAllOrNothing) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  ASSERT_TRUE(inv->put(record("Network", "old")).isOk());
  auto before = inv->snapshot();  // the cache must follow only what was committed
  ASSERT_TRUE(before.isOk());

  std::vector<Inventory::RecordWrite> writes = {{{"Network", "a"}, record("Network", "a")},
                                                {{"Network", "old"}, std::nullopt},
                                                {{"Network", "b"}, record("Network", "b")}};
  ASSERT_TRUE(inv->write(writes).isOk());
  auto after = inv->list();
  ASSERT_TRUE(after.isOk()) << after.status().message();
  ASSERT_EQ(after->size(), 2u);
  expectSameRecord((*after)[0], record("Network", "a"));
  expectSameRecord((*after)[1], record("Network", "b"));

  PlanAction c1 = actionFor(ActionType::Create, "c1");
  PlanAction c2 = actionFor(ActionType::Update, "c2");
  Json spec = {{"cidr", "10.9.0.0/24"}};
  auto ids = inv->journalBeginAll("rc-7", {{&c1, &spec}, {&c2, &spec}});
  ASSERT_TRUE(ids.isOk()) << ids.status().message();
  ASSERT_EQ(ids->size(), 2u);
  EXPECT_LT((*ids)[0], (*ids)[1]);
  auto unfinished = inv->unfinishedJournal();
  ASSERT_TRUE(unfinished.isOk());
  ASSERT_EQ(unfinished->size(), 2u);
  EXPECT_EQ((*unfinished)[1].object, (ObjectId{"Network", "c2"}));
  EXPECT_EQ((*unfinished)[1].reconcileId, "rc-7");

  // One entry that does not exist: no entry of the batch is ended.
  Status ended = inv->journalEndAll(
      {{(*ids)[0], true, ""}, {(*ids)[1] + 50, true, ""}, {(*ids)[1], false, "x"}});
  ASSERT_FALSE(ended.isOk());
  EXPECT_EQ(ended.message(), "inventory journal end of 3 entries <- no such journal entry #" +
                                 std::to_string((*ids)[1] + 50));
  unfinished = inv->unfinishedJournal();
  ASSERT_TRUE(unfinished.isOk());
  EXPECT_EQ(unfinished->size(), 2u);
  ASSERT_TRUE(inv->journalEndAll({{(*ids)[0], true, ""}, {(*ids)[1], false, "busy"}}).isOk());
  auto recent = inv->journal(2);
  ASSERT_TRUE(recent.isOk());
  ASSERT_EQ(recent->size(), 2u);
  EXPECT_EQ((*recent)[0].phase, "failed");
  EXPECT_EQ((*recent)[0].detail, "busy");
  EXPECT_EQ((*recent)[1].phase, "succeeded");

  // A refused row: nothing of the batch is written, to the file or to the cache.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((tmp.path() + "/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TRIGGER refuse BEFORE INSERT ON objects WHEN NEW.name = 'bad' "
                         "BEGIN SELECT RAISE(ABORT, 'refused'); END",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Status refused = inv->write({{{"Network", "a"}, std::nullopt},
                               {{"Network", "c"}, record("Network", "c")},
                               {{"Network", "bad"}, record("Network", "bad")}});
  ASSERT_FALSE(refused.isOk());
  EXPECT_EQ(refused.message(),
            "inventory write of 3 records <- put Network/bad <- sqlite: refused");
  auto kept = inv->list();
  ASSERT_TRUE(kept.isOk());
  ASSERT_EQ(kept->size(), 2u);
  EXPECT_EQ((*kept)[0].id, (ObjectId{"Network", "a"}));
  EXPECT_EQ((*kept)[1].id, (ObjectId{"Network", "b"}));
  inv.reset();
  auto reopened = openOrDie(tmp.path());
  ASSERT_TRUE(reopened);
  auto onDisk = reopened->list();
  ASSERT_TRUE(onDisk.isOk());
  EXPECT_EQ(onDisk->size(), 2u);
  auto c = reopened->get({"Network", "c"});
  ASSERT_TRUE(c.isOk());
  EXPECT_FALSE(*c);
}

TEST(InventoryTest, CloseInterruptedMarksWhatACrashLeftStartedOnce) {
  TempDir tmp;
  {
    auto inv = openOrDie(tmp.path());
    ASSERT_TRUE(inv);
    auto done = inv->journalBegin("rc-1", actionFor(ActionType::Create, "done"));
    ASSERT_TRUE(done.isOk());
    ASSERT_TRUE(inv->journalEnd(*done, true, "").isOk());
    ASSERT_TRUE(inv->journalBegin("rc-1", actionFor(ActionType::Delete, "cut")).isOk());
  }  // the process "dies" here: the entry of Network/cut stays started
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  auto closed = inv->closeInterrupted();
  ASSERT_TRUE(closed.isOk()) << closed.status().message();
  ASSERT_EQ(closed->size(), 1u);
  EXPECT_EQ((*closed)[0].object, (ObjectId{"Network", "cut"}));
  EXPECT_EQ((*closed)[0].action, "delete");
  EXPECT_EQ((*closed)[0].reconcileId, "rc-1");

  auto recent = inv->journal(1);
  ASSERT_TRUE(recent.isOk());
  ASSERT_EQ(recent->size(), 1u);
  EXPECT_EQ((*recent)[0].phase, "failed");
  EXPECT_EQ((*recent)[0].detail, Inventory::kInterrupted);
  // Reported once: the next holder of the state lock finds nothing left to close.
  closed = inv->closeInterrupted();
  ASSERT_TRUE(closed.isOk());
  EXPECT_TRUE(closed->empty());
}

TEST(InventoryTest, Revisions) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  auto none = inv->lastRevision();
  ASSERT_TRUE(none.isOk()) << none.status().message();
  EXPECT_FALSE(none->has_value());

  ASSERT_TRUE(inv->recordRevision({"r1", "hash1", "applied", 100}).isOk());
  ASSERT_TRUE(inv->recordRevision({"r2", "hash2", "partial", 90}).isOk());
  auto last = inv->lastRevision();
  ASSERT_TRUE(last.isOk());
  ASSERT_TRUE(last->has_value());
  // The last recorded, not the latest timestamp: clocks go backwards.
  EXPECT_EQ((*last)->revision, "r2");
  EXPECT_EQ((*last)->planHash, "hash2");
  EXPECT_EQ((*last)->result, "partial");
  EXPECT_EQ((*last)->at, 90);
}

TEST(InventoryTest, ReopenPersists) {
  TempDir tmp;
  ManagedRecord lab = record("Network", "lab");
  int64_t entry = 0;
  {
    auto inv = openOrDie(tmp.path());
    ASSERT_TRUE(inv);
    ASSERT_TRUE(inv->put(lab).isOk());
    ASSERT_TRUE(inv->recordRevision({"r1", "h1", "applied", 5}).isOk());
    auto e = inv->journalBegin("rc", actionFor(ActionType::Update, "lab"));
    ASSERT_TRUE(e.isOk());
    entry = *e;
    // Destroyed with the action "started": what a crash leaves behind.
  }
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  auto got = inv->get(lab.id);
  ASSERT_TRUE(got.isOk() && got->has_value());
  expectSameRecord(**got, lab);
  EXPECT_EQ((*inv->lastRevision())->revision, "r1");
  auto unfinished = inv->unfinishedJournal();
  ASSERT_TRUE(unfinished.isOk());
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].id, entry);
  EXPECT_EQ(pragma(tmp.path() + "/state.db", "user_version"), "5");
}

TEST(InventoryTest, RefusesANewerSchema) {
  TempDir tmp;
  { ASSERT_TRUE(openOrDie(tmp.path())); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((tmp.path() + "/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto inv = Inventory::open(tmp.path());
  ASSERT_FALSE(inv.isOk());
  EXPECT_EQ(inv.status().message(), "inventory open " + tmp.path() +
                                        "/state.db <- state database has schema version 99, "
                                        "newer than this hyper understands (5); upgrade hyper");
}

// A state database of the previous schema (3: no artifacts per revision) is migrated in place, and
// its revisions keep their history with no digests.
TEST(InventoryTest, MigratesAVersion3DatabaseAndKeepsItsRevisions) {
  TempDir tmp;
  { ASSERT_TRUE(openOrDie(tmp.path())); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((tmp.path() + "/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TABLE content_keys;"
                         "ALTER TABLE revisions DROP COLUMN content;"
                         "DROP INDEX objects_with_artifacts;"
                         "ALTER TABLE revisions DROP COLUMN artifacts_json;"
                         "INSERT INTO revisions (revision, plan_hash, result, at) "
                         "VALUES ('old', 'h', 'applied', 7);"
                         "PRAGMA user_version = 3;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);

  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  EXPECT_EQ(pragma(tmp.path() + "/state.db", "user_version"), "5");
  EXPECT_EQ((*inv->lastRevision())->revision, "old");
  auto digests = inv->revisionDigests(10);
  ASSERT_TRUE(digests.isOk()) << digests.status().message();
  EXPECT_TRUE(digests->empty());
}

// A converged revision keeps the build key of each record that has one for its content; one that
// did not converge (a build in progress, a failure, actions held back) keeps none, so that a key
// from before the content never passes for the content's.
TEST(InventoryTest, AConvergedContentKeepsItsBuildKeysNewestFirst) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  const std::string k1(64, 'a');
  const std::string k2(64, 'b');
  auto build = [](const std::string& name, const std::string& key) {
    ManagedRecord r = record("Build", name);
    r.handles = {{"key", key},
                 {"artifacts", {{"initrd", {{"digest", "sha256:" + std::string(64, key[0])}}}}}};
    return r;
  };
  ManagedRecord network = record("Network", "lab");  // no key: not kept
  ASSERT_TRUE(inv->put(network).isOk());
  ASSERT_TRUE(inv->put(build("initrd", k1)).isOk());

  RevisionEntry partial{"git:c1", "h", "partial", 1, "dir:content-1", false};
  ASSERT_TRUE(inv->recordRevision(partial).isOk());
  EXPECT_TRUE(inv->contentKeys("dir:content-1")->empty()) << "not converged: nothing kept";

  RevisionEntry done{"git:c1", "h", "applied", 2, "dir:content-1", true};
  ASSERT_TRUE(inv->recordRevision(done).isOk());
  ASSERT_TRUE(inv->recordRevision(done).isOk()) << "recorded again: nothing new";
  auto kept = inv->contentKeys("dir:content-1");
  ASSERT_TRUE(kept.isOk()) << kept.status().message();
  EXPECT_EQ(*kept, (KeptKeys{{"Build/initrd", {k1}}}));

  // The same content later built another key (its artifacts were collected): newest first.
  ASSERT_TRUE(inv->put(build("initrd", k2)).isOk());
  RevisionEntry again{"git:c3", "h", "applied", 3, "dir:content-1", true};
  ASSERT_TRUE(inv->recordRevision(again).isOk());
  EXPECT_EQ(*inv->contentKeys("dir:content-1"), (KeptKeys{{"Build/initrd", {k2, k1}}}));
  EXPECT_TRUE(inv->contentKeys("dir:other")->empty());

  // A handle that is not a key (not 64 hex) is not kept.
  ManagedRecord odd = build("odd", k1);
  odd.handles["key"] = "not-a-key";
  ASSERT_TRUE(inv->put(odd).isOk());
  RevisionEntry other{"git:c4", "h", "applied", 4, "dir:content-2", true};
  ASSERT_TRUE(inv->recordRevision(other).isOk());
  EXPECT_EQ(inv->contentKeys("dir:content-2")->count("Build/odd"), 0u);
  EXPECT_EQ(inv->contentKeys("dir:content-2")->at("Build/initrd"), std::vector<std::string>{k2});
}

TEST(InventoryTest, CorruptRowIsAnErrorWithContext) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  ASSERT_TRUE(inv->put(record("Network", "lab")).isOk());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((tmp.path() + "/state.db").c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  ASSERT_EQ(
      sqlite3_exec(db, "UPDATE objects SET spec_json = '{not json'", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  auto got = inv->get({"Network", "lab"});
  ASSERT_FALSE(got.isOk());
  EXPECT_EQ(got.status().message(),
            "inventory get Network/lab <- column spec_json is not valid JSON");
  auto all = inv->list();
  ASSERT_FALSE(all.isOk());
  EXPECT_EQ(all.status().message(),
            "inventory list <- row Network/lab <- column spec_json is not valid JSON");
}

TEST(InventoryTest, OpenFailsWithContextWhenStateDirIsAFile) {
  TempDir tmp;
  std::string file = tmp.path() + "/not-a-dir";
  std::ofstream(file) << "x";
  auto inv = Inventory::open(file);
  ASSERT_FALSE(inv.isOk());
  EXPECT_EQ(inv.status().message().rfind("inventory open " + file + "/state.db <- ", 0), 0u)
      << inv.status().message();
}

TEST(InventoryTest, ConcurrentWritersFromThreads) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  const int threads = 8;
  const int perThread = 40;
  std::vector<std::thread> workers;
  std::atomic<int> failures{0};
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < perThread; ++i) {
        std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto entry = inv->journalBegin("rc", actionFor(ActionType::Create, name));
        if (!entry.isOk() || !inv->put(record("Network", name)).isOk() ||
            !inv->journalEnd(*entry, true, "").isOk() || !inv->get({"Network", name}).isOk()) {
          ++failures;
        }
      }
    });
  }
  for (auto& w : workers) {
    w.join();
  }
  EXPECT_EQ(failures.load(), 0);
  auto all = inv->list();
  ASSERT_TRUE(all.isOk());
  EXPECT_EQ(all->size(), static_cast<size_t>(threads * perThread));
  EXPECT_TRUE(inv->unfinishedJournal()->empty());
  EXPECT_EQ(inv->journal(-1)->size(), static_cast<size_t>(threads * perThread));
}

bool sortedById(const Inventory::Records& records) {
  return std::is_sorted(records.begin(), records.end(),
                        [](const ManagedRecord& a, const ManagedRecord& b) { return a.id < b.id; });
}

TEST(InventoryTest, SnapshotIsAValueThatLaterWritesDoNotChange) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  ManagedRecord a = record("VM", "a");
  ManagedRecord b = record("VM", "b");
  ManagedRecord c = record("Network", "c");
  ASSERT_TRUE(inv->put(b).isOk());
  ASSERT_TRUE(inv->put(a).isOk());

  auto first = inv->snapshot();
  ASSERT_TRUE(first.isOk()) << first.status().message();
  ASSERT_EQ((*first)->size(), 2u);
  EXPECT_EQ((**first)[0].id, a.id);
  EXPECT_EQ((**first)[1].id, b.id);
  auto again = inv->snapshot();
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(*again, *first) << "nothing written since: the same snapshot, not a copy";

  a.revision = "next";
  ASSERT_TRUE(inv->put(a).isOk());
  ASSERT_TRUE(inv->remove(b.id).isOk());
  ASSERT_TRUE(inv->put(c).isOk());
  ASSERT_TRUE(inv->remove({"VM", "never-there"}).isOk());

  // What was handed out before the writes is unchanged...
  ASSERT_EQ((*first)->size(), 2u);
  expectSameRecord((**first)[0], record("VM", "a"));
  expectSameRecord((**first)[1], b);
  // ...and the next snapshot has them, sorted by kind then name.
  auto second = inv->snapshot();
  ASSERT_TRUE(second.isOk());
  EXPECT_NE(*second, *first);
  ASSERT_EQ((*second)->size(), 2u);
  expectSameRecord((**second)[0], c);
  expectSameRecord((**second)[1], a);
  auto listed = inv->list();
  ASSERT_TRUE(listed.isOk());
  ASSERT_EQ(listed->size(), 2u);
  expectSameRecord((*listed)[1], a);

  // The database holds the same: a fresh inventory reads it back.
  auto reopened = openOrDie(tmp.path());
  ASSERT_TRUE(reopened);
  auto fromDisk = reopened->snapshot();
  ASSERT_TRUE(fromDisk.isOk()) << fromDisk.status().message();
  ASSERT_EQ((*fromDisk)->size(), 2u);
  expectSameRecord((**fromDisk)[0], c);
  expectSameRecord((**fromDisk)[1], a);
}

TEST(InventoryTest, ASnapshotAfterAWriteSharesTheRecordsItDidNotChange) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_TRUE(inv->put(record("VM", name)).isOk());
  }
  auto first = inv->snapshot();
  ASSERT_TRUE(first.isOk());
  ManagedRecord b = record("VM", "b");
  b.revision = "next";
  ASSERT_TRUE(inv->put(b).isOk());
  auto second = inv->snapshot();
  ASSERT_TRUE(second.isOk());
  ASSERT_EQ((*second)->size(), 3u);
  // a and c are the very records of the first snapshot (not copies); b is the new one.
  EXPECT_EQ(&(**second)[0], &(**first)[0]);
  EXPECT_EQ(&(**second)[2], &(**first)[2]);
  EXPECT_NE(&(**second)[1], &(**first)[1]);
  EXPECT_EQ((**second)[1].revision, "next");
  EXPECT_NE((**first)[1].revision, "next");
}

TEST(InventoryTest, ACachedInventoryDoesNotSeeAnotherWritersRecords) {
  // Documented: the state lock makes one process the writer, so records are read once.
  TempDir tmp;
  auto cached = openOrDie(tmp.path());
  auto other = openOrDie(tmp.path());
  ASSERT_TRUE(cached && other);
  auto before = cached->snapshot();
  ASSERT_TRUE(before.isOk());
  EXPECT_TRUE((*before)->empty());
  ASSERT_TRUE(other->put(record("VM", "a")).isOk());
  auto after = cached->snapshot();
  ASSERT_TRUE(after.isOk());
  EXPECT_TRUE((*after)->empty()) << "the first snapshot read the database; later ones do not";
  auto got = cached->get({"VM", "a"});
  ASSERT_TRUE(got.isOk());
  EXPECT_TRUE(got->has_value()) << "get() reads the database";
}

TEST(InventoryTest, SnapshotsWhileThreadsWrite) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  ASSERT_TRUE(inv->snapshot().isOk());  // cache the (empty) records first
  const int threads = 4;
  const int perThread = 30;
  std::atomic<int> writersLeft{threads};
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < perThread; ++i) {
        std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (!inv->put(record("Network", name)).isOk()) {
          ++failures;
        }
        if (i % 3 == 0 && !inv->remove({"Network", name}).isOk()) {
          ++failures;
        }
      }
      --writersLeft;
    });
  }
  size_t snapshots = 0;
  while (writersLeft.load() > 0 || snapshots == 0) {
    auto s = inv->snapshot();
    ASSERT_TRUE(s.isOk()) << s.status().message();
    EXPECT_TRUE(sortedById(**s));
    ++snapshots;
  }
  for (auto& w : workers) {
    w.join();
  }
  EXPECT_EQ(failures.load(), 0);
  auto last = inv->snapshot();
  ASSERT_TRUE(last.isOk());
  const size_t kept = static_cast<size_t>(threads * (perThread - (perThread + 2) / 3));
  EXPECT_EQ((*last)->size(), kept);
  EXPECT_TRUE(sortedById(**last));
  auto reopened = openOrDie(tmp.path());
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened->snapshot())->size(), kept) << "the cache and the database agree";
}

TEST(InventoryTest, TwoConnectionsShareTheFile) {
  // hyperctl get reads while hyperd writes: both see one database.
  TempDir tmp;
  auto writer = openOrDie(tmp.path());
  auto reader = openOrDie(tmp.path());
  ASSERT_TRUE(writer && reader);
  ASSERT_TRUE(writer->put(record("VM", "a")).isOk());
  auto got = reader->get({"VM", "a"});
  ASSERT_TRUE(got.isOk());
  EXPECT_TRUE(got->has_value());
}

// Garbage collection's roots: the digests the records' handles name now, and those recorded with
// the last N distinct revisions.
TEST(InventoryTest, ArtifactDigestsOfTheRecordsAndOfTheLastRevisions) {
  TempDir tmp;
  auto inv = openOrDie(tmp.path());
  ASSERT_TRUE(inv);
  const std::string a = "sha256:" + std::string(64, 'a');
  const std::string b = "sha256:" + std::string(64, 'b');
  const std::string c = "sha256:" + std::string(64, 'c');
  ManagedRecord build = record("Build", "initrd");
  auto withDigest = [&](const std::string& d) {
    // Anywhere in the handles; near misses (65 hex, upper case, too short) are no digest.
    build.handles = {
        {"artifacts", {{"initrd", {{"digest", d}}}}},
        {"noise",
         {"sha256:" + std::string(65, 'd'), "sha256:" + std::string(64, 'E'), "sha256:abc"}}};
    return inv->put(build);
  };
  ASSERT_TRUE(inv->put(record("Network", "lab")).isOk());
  ASSERT_TRUE(withDigest(a).isOk());
  ASSERT_TRUE(inv->recordRevision({"r1", "h", "applied", 1}).isOk());
  ASSERT_TRUE(withDigest(b).isOk());
  ASSERT_TRUE(inv->recordRevision({"r2", "h", "applied", 2}).isOk());
  ASSERT_TRUE(withDigest(c).isOk());
  ASSERT_TRUE(inv->recordRevision({"r3", "h", "partial", 3}).isOk());
  ASSERT_TRUE(inv->recordRevision({"r3", "h", "applied", 4}).isOk());

  auto live = inv->referencedDigests();
  ASSERT_TRUE(live.isOk()) << live.status().message();
  EXPECT_EQ(*live, (std::set<std::string>{c}));
  EXPECT_EQ(*inv->revisionDigests(0), (std::set<std::string>{}));
  EXPECT_EQ(*inv->revisionDigests(1), (std::set<std::string>{c})) << "r3, recorded twice";
  EXPECT_EQ(*inv->revisionDigests(2), (std::set<std::string>{b, c}));
  EXPECT_EQ(*inv->revisionDigests(10), (std::set<std::string>{a, b, c}));
  EXPECT_EQ(*inv->artifactRoots(0), (std::set<std::string>{c})) << "what the records use";
  EXPECT_EQ(*inv->artifactRoots(2), (std::set<std::string>{b, c}));

  // What each object used, by revision: what hyperctl rebuild compares with.
  auto r2 = inv->revisionArtifacts("r2");
  ASSERT_TRUE(r2.isOk()) << r2.status().message();
  EXPECT_EQ(*r2, (std::map<std::string, std::set<std::string>>{{"Build/initrd", {b}}}));
  auto none = inv->revisionArtifacts("r9");
  ASSERT_FALSE(none.isOk());
  EXPECT_NE(none.status().message().find("no such revision"), std::string::npos);
}

}  // namespace
}  // namespace hyper
