// hyperd with the compiled-in providers and the test kinds of tests/kinds/.

#include <iostream>

#include "hyperd/hyperd.h"
#include "tests/kinds/kinds.h"

int main(int argc, char** argv) {
  auto kinds = hyper::KindRegistry::create(hyper::providers::testProviderRecords());
  if (!kinds.isOk()) {
    std::cerr << "error: " << kinds.status().message() << "\n";
    return 1;
  }
  return hyper::controller::hyperdMain(argc, argv, **kinds);
}
