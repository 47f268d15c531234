#!/usr/bin/env bash
# Fails when a C++ file of the project's own differs from the root .clang-format style.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cc' '*.h' 2>/dev/null || find reconciler providers controller source hyperd hyperctl host tests bench -name '*.cc' -o -name '*.h')
if [ -z "$files" ]; then
  exit 0
fi
# shellcheck disable=SC2086
if ! clang-format --dry-run --Werror $files; then
  echo "hyper: formatting differs from .clang-format; run: clang-format -i \$(git ls-files '*.cc' '*.h')" >&2
  exit 1
fi
