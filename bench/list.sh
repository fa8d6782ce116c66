#!/bin/bash
# Measures `kvmx list --json` with many registered VMs, each with a 10G
# qcow2 image made by qemu-img, in one run against two baselines measured
# the same way:
#   list          = kvmx list --json                        (median of 10)
#   start         = kvmx --version: starting the binary     (median of 10)
#   qemu-img info = one `qemu-img info` per image, what list once cost
#                                                           (median of 10)
# and the ratios list / start and list / qemu-img info.
# usage: bench/list.sh [VMS]   (default 100)
# Builds the release binary first; KVMX_BIN=path/to/kvmx skips that.
set -euo pipefail

count=${1:-100}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${KVMX_BIN:-}" ]; then
    bin=$KVMX_BIN
else
    echo "building kvmx (release)..." >&2
    (cd "$here" && cargo build --release --locked -q -p kvmx-cli --bin kvmx)
    target=$(cd "$here" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    bin=$target/release/kvmx
fi
[ -x "$bin" ] || { echo "no kvmx at $bin" >&2; exit 2; }
command -v qemu-img >/dev/null || { echo "qemu-img is needed (qemu-utils)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kvmx-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A hermetic home: nothing of the user's kvmx is read or changed.
export KVMX_HOME=$work/home

echo "registering $count VMs with 10G qcow2 images..." >&2
for i in $(seq -w "$count"); do
    project=$work/projects/vm$i
    mkdir -p "$project" "$KVMX_HOME/data/vm$i"
    (cd "$project" && "$bin" -q init >/dev/null)
    qemu-img create -q -f qcow2 "$KVMX_HOME/data/vm$i/box.img" 10G
done

# The listing must be real: every VM, stopped, and its image seen.
"$bin" list --json | python3 -c '
import json, sys
vms = json.load(sys.stdin)
assert len(vms) == int(sys.argv[1]), len(vms)
assert all(vm["state"] == "stopped" for vm in vms), vms
' "$count"
(cd "$work/projects/vm$(seq -w "$count" | head -1)" && "$bin" status --json) |
    python3 -c 'import json, sys; assert json.load(sys.stdin)["image_virtual_size"] == 10 << 30'

# Milliseconds of one run of "$@", output discarded; no process is forked
# to read the clock.
timed() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null
    awk "BEGIN { printf \"%.2f\n\", ($EPOCHREALTIME - $t0) * 1000 }"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ten() { for _ in $(seq 10); do timed "$@"; done | median; }
qemu_img_info_all() {
    for image in "$KVMX_HOME"/data/*/box.img; do
        qemu-img info -U --output=json "$image"
    done
}
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }

"$bin" list --json >/dev/null # warm the page cache
list=$(ten "$bin" list --json)
start=$(ten "$bin" --version)
info=$(ten qemu_img_info_all)

printf 'kvmx list --json, %s VMs      %9s ms\n' "$count" "$list"
printf 'kvmx --version                 %9s ms\n' "$start"
printf 'qemu-img info x %-4s           %9s ms\n' "$count" "$info"
printf 'list / start                   %9s\n' "$(ratio "$list" "$start")"
printf 'list / qemu-img info x %-4s    %9s\n' "$count" "$(ratio "$list" "$info")"
