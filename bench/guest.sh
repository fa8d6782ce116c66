#!/bin/bash
# Measures a command in a running guest, in one run on one VM:
#   login = `ssh true` with a login of its own each time (the VM's
#           `kvmx ssh-config` block): the baseline
#   kvmx  = `kvmx ssh VM -- true`, riding the VM's master connection
#   ratio = kvmx / login (medians of 9 each)
# usage: bench/guest.sh [path/to/kvmx]
# Builds the image first (set KVMX_CACHE_DIR to reuse a bootstrap cache).
# Uses TCG unless KVMX_ACCEL says otherwise.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/kvmx}
[ -x "$bin" ] || { echo "no kvmx at $bin (cargo build --release)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kvmx-bench.XXXXXX")
export KVMX_HOME=$work/home
export KVMX_CACHE_DIR=${KVMX_CACHE_DIR:-$work/cache}
export KVMX_ACCEL=${KVMX_ACCEL:-tcg}
cleanup() {
    "$bin" -q kill benchvm >/dev/null 2>&1 || true
    unshare --map-auto --map-root-user rm -rf "$work" 2>/dev/null || rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/benchvm"
(cd "$work/benchvm" && "$bin" -q init >/dev/null)
cat > "$work/benchvm/kvmx.toml" <<TOML
[hardware]
memory = "1G"
[image]
size = "3G"
[supervise]
boot_timeout = 600
TOML
"$bin" -q up "$work/benchvm" >/dev/null
"$bin" ssh-config "$work/benchvm" > "$work/ssh_config"

now() { date +%s.%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
timed() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>"$work/last.err" </dev/null || { echo "failed: $*" >&2; cat "$work/last.err" >&2; exit 1; }
    t1=$(now)
    awk "BEGIN { printf \"%.3f\", $t1 - $t0 }"
}

login=$(for _ in $(seq 9); do
    timed ssh -F "$work/ssh_config" -o BatchMode=yes kvmx-benchvm true; echo
done | median)
kvmx=$(for _ in $(seq 9); do
    timed "$bin" ssh "$work/benchvm" -- true; echo
done | median)
echo "login  ${login} s"
echo "kvmx   ${kvmx} s"
echo "ratio  $(awk "BEGIN { printf \"%.3f\", $kvmx / $login }")"
