#!/bin/bash
# Measures kvmx-ci's overhead on one job, in one run:
#   job   = `kvmx-ci run` of a job (SSH-signed repository, a kvmx project
#           inside, fresh = "reuse", one step) from a stopped VM
#   hand  = the same work by hand through kvmx on a VM of the same image:
#           `git archive` of the commit, `kvmx up`, rsync of the tree,
#           `kvmx ssh -- STEP`, `kvmx stop`
#   overhead = job - hand, and overhead / job
# Each is the median of 3 after one warm-up run that builds the images.
# usage: bench/ci.sh [target/release]   (needs kvmx and kvmx-ci there)
# Set KVMX_CACHE_DIR to reuse a bootstrap cache. Uses TCG.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bins=${1:-$here/target/release}
kvmx=$bins/kvmx
ci=$bins/kvmx-ci
for bin in "$kvmx" "$ci"; do
    [ -x "$bin" ] || { echo "no $bin (cargo build --release -p kvmx-cli -p kvmx-ci)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kvmx-bench.XXXXXX")
export KVMX_HOME=$work/home
export KVMX_CACHE_DIR=${KVMX_CACHE_DIR:-$work/cache}
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
cleanup() {
    "$kvmx" -q kill "$work/hand" >/dev/null 2>&1 || true
    unshare --map-auto --map-root-user rm -rf "$work" 2>/dev/null || rm -rf "$work"
}
trap cleanup EXIT

project='[hardware]
memory = "1G"
cpus = 2
accelerator = "tcg"
[image]
size = "3G"
[supervise]
boot_timeout = 900'
step='sh build.sh'

# The repository, its one commit signed with a key made here.
ssh-keygen -q -t ed25519 -N '' -C bench@example.org -f "$work/key"
echo "bench@example.org namespaces=\"git\" $(cut -d' ' -f1,2 "$work/key.pub")" > "$work/allowed_signers"
mkdir -p "$work/repo"
cd "$work/repo"
git init -q -b main
printf '%s\n' "$project" > kvmx.toml
printf 'for i in $(seq 200); do echo "line $i"; done > out.txt\nwc -l out.txt\n' > build.sh
git add -A
git -c user.name=bench -c user.email=bench@example.org -c gpg.format=ssh \
    -c user.signingkey="$work/key" commit -q -S -m bench
commit=$(git rev-parse HEAD)

mkdir -p "$KVMX_HOME/config/ci"
cat > "$KVMX_HOME/config/ci/bench.toml" <<TOML
[source]
url = "$work/repo"
verify = "ssh"
allowed_signers = "$work/allowed_signers"
trust_root = "$commit"
[vm]
project = "."
fresh = "reuse"
[[step]]
name = "build"
run = "$step"
TOML

# The same project by hand, exported the same way.
mkdir -p "$work/hand"
git -C "$work/repo" archive "$commit" | tar -x -C "$work/hand"

now() { date +%s.%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
quiet() { "$@" >/dev/null 2>"$work/last.err" </dev/null || { echo "failed: $*" >&2; cat "$work/last.err" >&2; exit 1; }; }
timed() {
    local t0 t1
    t0=$(now); "$@"; t1=$(now)
    awk "BEGIN { printf \"%.3f\", $t1 - $t0 }"
}
by_ci() { quiet "$ci" run bench; }
by_hand() {
    quiet git -C "$work/repo" archive "$commit" -o "$work/export.tar"
    quiet "$kvmx" -q up "$work/hand"
    "$kvmx" ssh "$work/hand" -- "rm -rf src && mkdir src && tar -x -C src" \
        < "$work/export.tar" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; exit 1; }
    quiet "$kvmx" ssh "$work/hand" -- "cd src && $step"
    quiet "$kvmx" -q stop "$work/hand"
}

# Warm-up: builds both images.
by_ci
by_hand

job=$(for _ in 1 2 3; do timed by_ci; echo; done | median)
hand=$(for _ in 1 2 3; do timed by_hand; echo; done | median)
echo "job       ${job} s (kvmx-ci run)"
echo "hand      ${hand} s (kvmx up, copy, step, stop)"
echo "overhead  $(awk "BEGIN { printf \"%.3f s, %.1f %% of the job\", $job - $hand, 100 * ($job - $hand) / $job }")"
