#!/usr/bin/env bash
# Fails when a tracked file depends on something outside the repository:
# the sibling `shared` folder (its traces or its protocol text, by relative path)
# or an absolute path into a workspace or home folder (including wherever
# this clone itself lives). A fresh clone on its own must build, test and
# benchmark; test data lives in tests/data/, the protocol in docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd -P)"
parent="$(dirname "$root")"

self="scripts/check-self-contained.sh"
# The patterns are assembled so that this script does not match itself.
sh="sha""red"
patterns=(
  "(\.\./)+${sh}([/\"'\`)]|$)"
  "(^|[^A-Za-z0-9_.-])${sh}/(traces|PROTOCOL\.md)"
  "(^|[\"'\` (=:])/(work|home|root|Users)/[A-Za-z0-9_.-]"
)
if [ "$parent" != "/" ]; then
  patterns+=("$(printf '%s' "$parent/" | sed 's/[.[\*^$()+?{|]/\\&/g')")
fi

hits=""
for p in "${patterns[@]}"; do
  hits+="$(git ls-files -z -- . ":(exclude)$self" | xargs -0 grep -InE -- "$p" 2>/dev/null || true)"$'\n'
done
hits="$(printf '%s' "$hits" | sed '/^$/d' | sort -u)"
if [ -n "$hits" ]; then
  echo "check-self-contained: tracked files reference paths outside the repository:" >&2
  printf '%s\n' "$hits" >&2
  echo "check-self-contained: FAILED (ship what is needed inside the repository and use relative paths)" >&2
  exit 1
fi
echo "check-self-contained: ok ($(git ls-files | wc -l) tracked files, nothing outside the repository)"
