#!/usr/bin/env bash
# Fails when a C source or header does not follow the committed .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
if git rev-parse --git-dir >/dev/null 2>&1; then
    files=$(git ls-files '*.c' '*.h')
else
    files=$(find core drivers plugins store tools test -name '*.[ch]')
fi
bad=0
for f in $files; do
    [ -f "$f" ] || continue
    if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run: clang-format -i $f)"
        bad=1
    fi
done
[ $bad -eq 0 ] && echo "all $(echo "$files" | wc -w) C files follow .clang-format"
exit $bad
