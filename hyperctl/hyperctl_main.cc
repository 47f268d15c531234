// hyperctl (hyperctl/hyperctl.cc), with the compiled-in providers.

#include <iostream>

#include "hyperctl/hyperctl.h"
#include "providers/builtin.h"

int main(int argc, char** argv) {
  auto kinds = hyper::providers::builtinKinds();
  if (!kinds.isOk()) {
    std::cerr << "error: " << kinds.status().message() << "\n";
    return 1;
  }
  return hyper::ctl::hyperctlMain(argc, argv, **kinds);
}
