#!/bin/bash
# Measures kvmx-create against plain mmdebstrap, in one run:
#   cold ratio  = kvmx-create with an empty cache / mmdebstrap of the same
#                 package set and sources               (goal <= 1.15)
#   warm ratio  = kvmx-create again, the cache filled / kvmx-create cold
#                                                        (goal <= 0.2)
#   then the builder VM paths (see the end; BUILDER=0 skips them, BASE=0
#   skips the two ratios above, IB=0 the image-bootstrap build)
# usage: bench/create.sh [path/to/kvmx-create]
# Run it as the user who builds images (mmdebstrap's unshare mode without
# root). Needs network access to the Debian mirror.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/kvmx-create}
[ -x "$bin" ] || { echo "no kvmx-create at $bin (cargo build --release)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kvmx-bench.XXXXXX")
cleanup() { unshare --map-auto --map-root-user rm -rf "$work" 2>/dev/null || rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/project" "$work/home" "$work/cache"
cat > "$work/project/kvmx.toml" <<'TOML'
[vm]
name = "bench"
[image]
size = "3G"
TOML

now() { date +%s.%N; }
elapsed() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }
ratio() { awk "BEGIN { printf \"%.3f\", $1 / $2 }"; }
create() {
    (cd "$work/project" && KVMX_HOME=$work/home KVMX_CACHE_DIR=$work/cache "$bin" --json "$@")
}

if [ "${BASE:-1}" = 1 ]; then
echo "kvmx-create cold (empty cache)..." >&2
t0=$(now); create > "$work/cold.json"; t1=$(now)
cold=$(elapsed "$t0" "$t1")

# The same package set and sources, from the cache entry kvmx-create made.
read -r suite includes sources < <(
    KVMX_HOME=$work/home KVMX_CACHE_DIR=$work/cache "$bin" cache list --json | python3 -c '
import json, sys
spec = json.load(sys.stdin)[0]["spec"]
mirror = spec["mirror"].rstrip("/")
suite = spec["suite"]
lines = ["deb %s %s main" % (mirror, suite)]
if suite in ("bullseye", "bookworm", "trixie", "stable", "oldstable"):
    lines.append("deb %s %s-updates main" % (mirror, suite))
    if mirror.endswith("/debian"):
        lines.append("deb %s-security %s-security main" % (mirror, suite))
print(suite, ",".join(spec["packages"]), "|".join(lines))
')
IFS='|' read -r -a source_lines <<< "$sources"

echo "plain mmdebstrap..." >&2
t0=$(now)
mmdebstrap --mode=auto --variant=apt --format=tar --include="$includes" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$suite" "$work/plain.tar" "${source_lines[@]}" > "$work/mmdebstrap.log" 2>&1
t1=$(now)
plain=$(elapsed "$t0" "$t1")

echo "kvmx-create warm (cache filled)..." >&2
t0=$(now); create --force > "$work/warm.json"; t1=$(now)
warm=$(elapsed "$t0" "$t1")
grep -q '"cache": "hit"' "$work/warm.json" || { echo "the warm build missed the cache" >&2; exit 1; }

printf 'mmdebstrap            %8s s\n' "$plain"
printf 'kvmx-create cold      %8s s\n' "$cold"
printf 'kvmx-create warm      %8s s\n' "$warm"
printf 'cold / mmdebstrap     %8s   (goal <= 1.15)\n' "$(ratio "$cold" "$plain")"
printf 'warm / cold           %8s   (goal <= 0.2)\n' "$(ratio "$warm" "$cold")"
fi

# The builder VM's paths (BUILDER=0 skips them): LVM in LUKS cold (no
# cached builder image) and warm (cached), each against the plain
# rootless create of the same package set with a filled cache; then a
# Debian image by image-bootstrap.
[ "${BUILDER:-1}" = 1 ] || exit 0
layout_project() {
    mkdir -p "$work/$1"
    cat > "$work/$1/kvmx.toml" <<TOML
[vm]
name = "$1"
[image]
size = "3G"
[create]
packages = ["lvm2", "cryptsetup", "cryptsetup-initramfs"]
$2
TOML
}
create_in() {
    (cd "$work/$1" && KVMX_HOME=$work/home KVMX_CACHE_DIR=$work/cache "$bin" --json --force > "$work/$1.json")
}
layout_project plain ''
layout_project luks $'layout = "lvm"\nencryption = "luks"'
layout_project ib $'method = "image-bootstrap"\ndistribution = "debian"'

echo "plain create of the LVM/LUKS package set (fills its cache)..." >&2
create_in plain
t0=$(now); create_in plain; t1=$(now)
plain_lvm=$(elapsed "$t0" "$t1")
echo "LVM in LUKS, cold builder..." >&2
rm -rf "$work/cache/builder"
t0=$(now); create_in luks; t1=$(now)
luks_cold=$(elapsed "$t0" "$t1")
echo "LVM in LUKS, warm builder..." >&2
t0=$(now); create_in luks; t1=$(now)
luks_warm=$(elapsed "$t0" "$t1")
ib=skipped
if [ "${IB:-1}" = 1 ]; then
    echo "image-bootstrap Debian..." >&2
    t0=$(now); create_in ib; t1=$(now)
    ib=$(elapsed "$t0" "$t1")
fi

printf 'plain (LVM/LUKS packages) %8s s\n' "$plain_lvm"
printf 'LVM+LUKS cold builder     %8s s  %s x plain\n' "$luks_cold" "$(ratio "$luks_cold" "$plain_lvm")"
printf 'LVM+LUKS warm builder     %8s s  %s x plain, builder adds %s s (goal <= 60)\n' \
    "$luks_warm" "$(ratio "$luks_warm" "$plain_lvm")" "$(elapsed "$plain_lvm" "$luks_warm")"
printf 'image-bootstrap Debian    %8s s\n' "$ib"
