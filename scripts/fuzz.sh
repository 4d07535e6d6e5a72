#!/usr/bin/env bash
# Runs every Go fuzz target in the tree for a while (default 30s each).
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-30s}
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "== $pkg $target"
		# Minimizing each new input takes up to a minute by default,
		# and no other input runs meanwhile: the targets that take KiB
		# of guest memory or frames would hardly fuzz at all.
		go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -fuzzminimizetime 5s
	done
done
