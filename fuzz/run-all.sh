#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 60), one after the other.
# Exits non-zero as soon as a target finds a crash (its input is in fuzz/artifacts/<target>/).
#
#   fuzz/run-all.sh 180          # from the repository root or from fuzz/
#   JOBS=2 fuzz/run-all.sh 1800  # libFuzzer workers per target (default 1)
#
# Seeds come from fuzz/corpus/<target>/ (committed, read only here); what libFuzzer adds while
# it runs goes to fuzz/grown/<target>/ (ignored by git), so the committed corpus stays small.
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain provide them.
set -euo pipefail

seconds="${1:-60}"
jobs="${JOBS:-1}"
cd "$(dirname "$0")/.."

targets=(query upstream_answer packet_parse list_lines config capture rpz_zone proxy_header)
export RUSTC_BOOTSTRAP=1

cargo fuzz build
for target in "${targets[@]}"; do
    mkdir -p "fuzz/grown/$target"
    echo "== $target: ${seconds}s"
    # -rss_limit_mb bounds memory (the capture reader must not grow with its input), and
    # -timeout flags an input that takes 10 s: every check takes micro- to milliseconds.
    args=(-max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1)
    if [ "$jobs" -gt 1 ]; then
        # Parallel workers log to fuzz-N.log in the current directory.
        args+=(-jobs="$jobs" -workers="$jobs")
    fi
    if ! cargo fuzz run "$target" "fuzz/grown/$target" "fuzz/corpus/$target" -- "${args[@]}"; then
        echo "== $target found a crash: see fuzz/artifacts/$target/ and fuzz/README.md" >&2
        exit 1
    fi
done
echo "== every target ran ${seconds}s without a finding"
