#!/bin/bash
# Measures a whole unattended Debian install (create.method = "install"):
# `kvmx up` of a VM with no image, which runs Debian's netboot installer
# with kvmx's preseed, boots the installed disk and waits for SSH; then
# `kvmx ssh -- true` against the host key kvmx recorded. Prints the time of
# each installer step and the total.
# usage: bench/install.sh [--layout plain|lvm|luks] [path/to/kvmx]
# MIRROR names the Debian mirror (default http://deb.debian.org/debian/); it
# must serve the installer's .udeb files. Uses TCG unless KVMX_ACCEL says
# otherwise. Needs the package debian-installer-12-netboot-amd64.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
layout=plain
while [ $# -gt 0 ]; do
    case $1 in
        --layout) shift; layout=$1 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
bin=${1:-$here/target/release/kvmx}
[ -x "$bin" ] || { echo "no kvmx at $bin (cargo build --release)" >&2; exit 2; }
mirror=${MIRROR:-http://deb.debian.org/debian/}

case $layout in
    plain) disk='layout = "plain"' ;;
    lvm) disk='layout = "lvm"' ;;
    luks) disk=$'layout = "lvm"\nencryption = "luks"' ;;
    *) echo "--layout takes plain, lvm or luks" >&2; exit 2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/kvmx-bench.XXXXXX")
kvmx() { (cd "$work/project" && KVMX_HOME=$work/home "$bin" "$@"); }
cleanup() { kvmx kill >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/project" "$work/home"
cat > "$work/project/kvmx.toml" <<TOML
[vm]
name = "bench-install"

[hardware]
memory = "1G"
cpus = 2

[image]
size = "6G"

[create]
method = "install"
mirror = "$mirror"
$disk

[install]
timeout = 14400

[supervise]
boot_timeout = 1800
TOML

now() { date +%s.%N; }
elapsed() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }

echo "kvmx up with an unattended install ($layout)..." >&2
t0=$(now)
kvmx up 2> "$work/up.err" || { cat "$work/up.err" >&2; exit 1; }
t1=$(now)
kvmx ssh -- true
grep -E '^  installer: ' "$work/up.err" || true
echo "install + first boot: $(elapsed "$t0" "$t1") s"
