#include "reconciler/graph.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace hyper {
namespace {

ObjectId thing(size_t i) { return ObjectId("Thing", "t" + std::to_string(i)); }

// The search as written before it kept its own stack: recursive, over the graph's own order.
std::vector<std::vector<ObjectId>> recursiveCycles(
    const std::map<ObjectId, std::set<ObjectId>>& g) {
  std::map<ObjectId, int> colour;  // 0 white, 1 grey, 2 black
  std::vector<std::vector<ObjectId>> found;
  std::vector<ObjectId> stack;
  std::function<void(const ObjectId&)> visit = [&](const ObjectId& id) {
    colour[id] = 1;
    stack.push_back(id);
    for (const auto& next : g.at(id)) {
      if (colour[next] == 1) {
        found.emplace_back(std::find(stack.begin(), stack.end(), next), stack.end());
      } else if (colour[next] == 0) {
        visit(next);
      }
    }
    stack.pop_back();
    colour[id] = 2;
  };
  for (const auto& [id, _] : g) {
    if (colour[id] == 0) {
      visit(id);
    }
  }
  return found;
}

TEST(DependencyGraphTest, CyclesAreTheRecursiveSearchsInTheSameOrder) {
  std::mt19937 rng(17);
  for (int round = 0; round < 300; ++round) {
    size_t n = 1 + rng() % 12;
    size_t edges = rng() % (2 * n + 1);
    DependencyGraph graph;
    std::map<ObjectId, std::set<ObjectId>> oracle;
    for (size_t i = 0; i < n; ++i) {
      graph.addNode(thing(i));
      oracle[thing(i)];
    }
    for (size_t e = 0; e < edges; ++e) {
      ObjectId from = thing(rng() % n);
      ObjectId to = thing(rng() % n);
      graph.addEdge(from, to);
      oracle[from].insert(to);
    }
    EXPECT_EQ(graph.cycles(), recursiveCycles(oracle)) << "round " << round;
  }
}

TEST(DependencyGraphTest, ALongChainIsSearchedWithoutRunningOutOfStack) {
  // 200,000 objects each referring to the next, the last back to the one 3 before it: a
  // recursive search goes 200,000 calls deep (some 40 MB of stack, past a thread's 8 MB).
  constexpr size_t kLength = 200000;
  DependencyGraph graph;
  for (size_t i = 0; i + 1 < kLength; ++i) {
    graph.addEdge(thing(i), thing(i + 1));
  }
  graph.addEdge(thing(kLength - 1), thing(kLength - 4));
  auto cycles = graph.cycles();
  ASSERT_EQ(cycles.size(), 1u);
  EXPECT_EQ(cycles[0], (std::vector<ObjectId>{thing(kLength - 4), thing(kLength - 3),
                                              thing(kLength - 2), thing(kLength - 1)}));
}

TEST(DependencyGraphTest, ASelfReferenceAndTwoSeparateLoopsAreEachReportedOnce) {
  DependencyGraph graph;
  graph.addEdge(thing(1), thing(1));
  graph.addEdge(thing(2), thing(3));
  graph.addEdge(thing(3), thing(2));
  graph.addEdge(thing(4), thing(2));
  graph.addNode(thing(5));
  EXPECT_EQ(graph.cycles(), (std::vector<std::vector<ObjectId>>{{thing(1)}, {thing(2), thing(3)}}));
}

// The order of some objects and what they depend on is the whole graph's order kept to them: on
// random acyclic graphs (edges from higher to lower numbers, names sorting apart from numbers)
// and random picks, and with names not in the graph.
TEST(DependencyGraphTest, TheOrderOfAFewIsTheWholeOrderKeptToThemAndWhatTheyDependOn) {
  std::mt19937 rng(17);
  for (int round = 0; round < 200; ++round) {
    const size_t n = 1 + rng() % 40;
    DependencyGraph graph;
    for (size_t i = 0; i < n; ++i) {
      graph.addNode(thing(i));
      for (size_t j = 0; j < i; ++j) {
        if (rng() % 6 == 0) {
          graph.addEdge(thing(i), thing(j));
        }
      }
    }
    std::vector<ObjectId> picked;
    for (size_t k = 1 + rng() % 4; k > 0; --k) {
      picked.push_back(thing(rng() % (n + 2)));  // n and n+1 are not in the graph
    }
    // What the picks depend on, transitively, by a walk of the whole graph's edges.
    std::set<ObjectId> closure;
    std::vector<ObjectId> todo;
    for (const auto& id : picked) {
      if (graph.hasNode(id)) {
        todo.push_back(id);
      }
    }
    while (!todo.empty()) {
      ObjectId id = todo.back();
      todo.pop_back();
      if (closure.insert(id).second) {
        for (const auto& d : graph.dependencies(id)) {
          todo.push_back(d);
        }
      }
    }
    std::vector<ObjectId> expected;
    for (const auto& id : graph.topologicalOrder()) {
      if (closure.count(id)) {
        expected.push_back(id);
      }
    }
    EXPECT_EQ(graph.topologicalOrderOf(picked), expected) << "round " << round;
  }
}

}  // namespace
}  // namespace hyper
