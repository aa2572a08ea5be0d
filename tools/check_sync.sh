#!/usr/bin/env bash
# Fails when nbdev-export or nbdev-clean would change a notebook or the generated library.
set -euo pipefail
cd "$(dirname "$0")/.."
snap() { find nbs mlops_wb -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; }
before=$(mktemp); after=$(mktemp)
snap > "$before"
nbdev-export
nbdev-clean
snap > "$after"
if ! diff -u "$before" "$after"; then
  echo "sync-check: nbdev-export / nbdev-clean changed the files above." >&2
  echo "Edit the notebooks in nbs/, run nbdev-export and nbdev-clean, and commit notebook and module together." >&2
  exit 1
fi
echo "sync-check: notebooks clean, library in sync with nbs/"
