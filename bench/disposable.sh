#!/bin/bash
# Measures disposables, in one run on one template:
#   cold  = `kvmx disposable T -- true` that boots the template's system
#           (warm state disabled)
#   warm  = the same, restored from the template's warm state (median of 9)
#   ratio = warm / cold
#   ssh   = the warm runs again with no kvmx-agent on the host, so that
#           their commands go over SSH (a state saved without the agent;
#           median of 9), and agent / ssh
#   mat   = `kvmx mat` of one PDF in a disposable of the sanitizer example
#           (skipped with --no-mat)
# usage: bench/disposable.sh [--no-mat] [path/to/kvmx]
# Builds the images it needs first (set KVMX_CACHE_DIR to reuse a bootstrap
# cache; with a warm one this takes a few minutes). Uses TCG unless
# KVMX_ACCEL says otherwise.
set -euo pipefail

mat=yes
if [ "${1:-}" = --no-mat ]; then mat=no; shift; fi
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/kvmx}
[ -x "$bin" ] || { echo "no kvmx at $bin (cargo build --release)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kvmx-bench.XXXXXX")
export KVMX_HOME=$work/home
export KVMX_CACHE_DIR=${KVMX_CACHE_DIR:-$work/cache}
export KVMX_ACCEL=${KVMX_ACCEL:-tcg}
cleanup() {
    "$bin" -q disposable --cleanup >/dev/null 2>&1 || true
    "$bin" -q kill tmpl >/dev/null 2>&1 || true
    "$bin" -q kill sanitizer >/dev/null 2>&1 || true
    unshare --map-auto --map-root-user rm -rf "$work" 2>/dev/null || rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/tmpl"
(cd "$work/tmpl" && "$bin" -q init >/dev/null)
write_config() {
    cat > "$work/tmpl/kvmx.toml" <<TOML
[hardware]
memory = "1G"
[image]
size = "3G"
[disposable]
warm = $1
[supervise]
boot_timeout = 600
TOML
}
write_config false

now() { date +%s.%N; }
elapsed() { awk "BEGIN { printf \"%.2f\", $2 - $1 }"; }
ratio() { awk "BEGIN { printf \"%.3f\", $1 / $2 }"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
timed() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>"$work/last.err" || { echo "failed: $*" >&2; cat "$work/last.err" >&2; exit 1; }
    t1=$(now)
    elapsed "$t0" "$t1"
}

echo "building and booting the template once..." >&2
"$bin" -q up tmpl >/dev/null
"$bin" -q stop tmpl >/dev/null

echo "cold disposable..." >&2
cold=$(timed "$bin" disposable tmpl -- true)

write_config true
echo "first warm-enabled disposable (boots and saves the state)..." >&2
first=$(timed "$bin" disposable tmpl -- true)

echo "warm disposables..." >&2
# Restores vary by a few tenths of a second, so nine of them, all shown.
warm_all=$(for _ in 1 2 3 4 5 6 7 8 9; do timed "$bin" disposable tmpl -- true; echo; done)
warm=$(echo "$warm_all" | median)

echo "warm disposables over SSH (no agent; boots and saves a state first)..." >&2
export KVMX_AGENT=/nonexistent/kvmx-agent
"$bin" -q disposable tmpl -- true >/dev/null 2>&1
ssh_all=$(for _ in 1 2 3 4 5 6 7 8 9; do timed "$bin" disposable tmpl -- true; echo; done)
ssh=$(echo "$ssh_all" | median)
unset KVMX_AGENT

mat_time=skipped
if [ "$mat" = yes ]; then
    echo "kvmx mat on one PDF (sanitizer template)..." >&2
    mkdir -p "$work/sanitizer"
    (cd "$work/sanitizer" && "$bin" -q init >/dev/null)
    # Without its provisioning, which downloads ClamAV's signatures.
    sed '/^\[provision\]/,/^command/d' "$here/examples/sanitizer/kvmx.toml" \
        > "$work/sanitizer/kvmx.toml"
    "$bin" -q up sanitizer >/dev/null
    "$bin" -q stop sanitizer >/dev/null
    printf '%%PDF-1.4\n1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n2 0 obj <</Type/Pages/Kids[3 0 R]/Count 1>> endobj\n3 0 obj <</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>> endobj\n4 0 obj <</Author(bench)>> endobj\ntrailer <</Root 1 0 R/Info 4 0 R>>\n%%%%EOF\n' > "$work/doc.pdf"
    # The first run saves the sanitizer's warm state; time the second.
    "$bin" -q mat sanitizer "$work/doc.pdf" >/dev/null 2>&1 || true
    rm -f "$work"/doc.cleaned.pdf
    mat_time=$(timed "$bin" mat sanitizer "$work/doc.pdf")
fi

printf '%-44s %8s\n' "measure" "seconds"
printf '%-44s %8s\n' "cold disposable -- true (boot)" "$cold"
printf '%-44s %8s\n' "first disposable with warm state (boot+save)" "$first"
printf '%-44s %8s\n' "warm disposable -- true (restore, median 9)" "$warm"
printf '%-44s %8s\n' "warm disposable over SSH (no agent, median 9)" "$ssh"
printf '%-44s %8s\n' "kvmx mat, one PDF" "$mat_time"
printf 'warm runs: %s\n' "$(echo $warm_all)"
printf 'warm over SSH runs: %s\n' "$(echo $ssh_all)"
printf 'warm/cold ratio: %s (goal: warm <= 0.5 s)\n' "$(ratio "$warm" "$cold")"
printf 'agent/ssh ratio: %s\n' "$(ratio "$warm" "$ssh")"
