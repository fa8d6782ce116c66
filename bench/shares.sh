#!/bin/bash
# Measures every share kind on one guest, in one run, against the guest's
# own disk:
#   read  = cat of one 256 MiB file
#   walk  = find | wc -l, then cat of every file, over a tree of 5,000 files
# each as seconds and as a ratio to the same work on the guest's disk
# (lower is better). The guest's page cache is dropped before each step.
# sshfs mounts a guest folder on the host, so it is measured from the host
# (reading the guest's disk through the guest's sftp-server).
#
# Beside kvmx's own choices ("default-kind": a share with no kind; "9p" and
# "virtiofs": kvmx's options for each), the same folder is shared with the
# tuning options of each kind, to compare them in the same run:
#   9p        msize (128 KiB, the kernel's default; 512 KiB) and cache
#             (none, loose, mmap, fscache), as kvmx shares with `msize` and
#             `cache`; "9p 128K none" is what kvmx mounted before it was
#             tuned;
#   virtiofs  virtiofsd's --cache (auto, always, never, metadata) and
#             --thread-pool-size, QEMU's queue-size; these run a virtiofsd
#             started here, given to QEMU through hardware.qemu_args and
#             mounted with the guest's default read-ahead; "vfs-auto-q128"
#             is what kvmx ran before it was tuned.
# QEMU 7.2 has no DAX window for virtiofs (no cache-size property on
# vhost-user-fs-pci), so DAX is not measured.
# usage: bench/shares.sh [path/to/kvmx]
#   QUICK=1: only kvmx's kinds and the two "before" rows.
# kvmx-nfsd must sit beside kvmx (cargo build --release builds both);
# KVMX_ACCEL and KVMX_CACHE_DIR are passed on (set KVMX_CACHE_DIR to reuse a
# bootstrap cache).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/kvmx}
[ -x "$bin" ] || { echo "no kvmx at $bin (cargo build --release)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kvmx-bench.XXXXXX")
export KVMX_HOME=$work/home
export KVMX_CACHE_DIR=${KVMX_CACHE_DIR:-$work/cache}
kvmx() { (cd "$work/project" && "$bin" "$@"); }
daemons=()
cleanup() {
    kvmx kill >/dev/null 2>&1 || true
    for pid in "${daemons[@]}"; do kill "$pid" 2>/dev/null || true; done
    fusermount3 -u "$work/sshfs" 2>/dev/null || fusermount -u "$work/sshfs" 2>/dev/null || true
    unshare --map-auto --map-root-user rm -rf "$work" 2>/dev/null || rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/project" "$work/data/tree" "$work/sshfs"

# The data: one big file and 50 folders of 100 files of 1 KiB.
head -c 256M /dev/urandom > "$work/data/big"
for d in $(seq 50); do
    mkdir "$work/data/tree/$d"
    for f in $(seq 100); do head -c 1024 /dev/urandom > "$work/data/tree/$d/$f"; done
done
entries=$(find "$work/data/tree" | wc -l)

# virtiofs variants: "name|virtiofsd options|vhost-user-fs-pci options";
# 9p variants: "msize cache".
variants=("vfs-auto-q128|--cache=auto|")
nine_p=("131072 none")
if [ -z "${QUICK:-}" ]; then
    variants+=(
        "vfs-auto|--cache=auto|,queue-size=1024"
        "vfs-always|--cache=always|,queue-size=1024"
        "vfs-never|--cache=never|,queue-size=1024"
        "vfs-metadata|--cache=metadata|,queue-size=1024"
        "vfs-auto-pool|--cache=auto --thread-pool-size=4|,queue-size=1024"
    )
    nine_p+=("524288 none" "524288 loose" "524288 mmap" "524288 fscache")
fi

virtiofsd=${KVMX_VIRTIOFSD:-$(command -v virtiofsd || echo "$HOME/.cargo/bin/virtiofsd")}
sandbox=none
[ "$(id -u)" -eq 0 ] && sandbox=namespace
qemu_args=()
for variant in "${variants[@]}"; do
    IFS='|' read -r name options device <<<"$variant"
    # shellcheck disable=SC2086 # the options are words
    "$virtiofsd" --socket-path="$work/$name.sock" --shared-dir="$work/data" \
        --sandbox=$sandbox $options 2>"$work/$name.log" &
    daemons+=($!)
    qemu_args+=("\"-chardev\", \"socket,id=$name,path=$work/$name.sock\"")
    qemu_args+=("\"-device\", \"vhost-user-fs-pci,chardev=$name,tag=$name$device\"")
done

shares=""
share() { # id guest kind [more lines]
    shares+="
[[shares]]
id = \"$1\"
host = \"$work/data\"
guest = \"$2\"
${3:+kind = \"$3\"}
${4:-}"
}
share default /mnt/default-kind
share p9 /mnt/9p 9p
share vfs /mnt/virtiofs virtiofs
for variant in "${nine_p[@]}"; do
    read -r msize cache <<<"$variant"
    share "p9-$msize-$cache" "/mnt/9p-$msize-$cache" 9p "msize = $msize
cache = \"$cache\""
done
if [ -z "${QUICK:-}" ]; then
    share rev /mnt/reverse-sshfs reverse-sshfs
    share net /mnt/nfs nfs
    share win /mnt/smb smb
    shares+="
[[shares]]
id = \"back\"
host = \"$work/sshfs\"
guest = \"/home/user\"
kind = \"sshfs\"
read_only = true
"
fi

cat > "$work/project/kvmx.toml" <<TOML
[vm]
name = "sharebench"
[hardware]
memory = "1G"
cpus = 2
qemu_args = [$(IFS=,; echo "${qemu_args[*]}")]
[image]
size = "4G"
[create]
packages = ["sshfs", "cifs-utils", "nfs-common"]
[supervise]
boot_timeout = 900
$shares
TOML

# Times the two steps in a folder; prints "read_seconds walk_seconds".
cat > "$work/measure.sh" <<'SH'
#!/bin/sh
set -eu
dir=$1; entries=$2; drop=$3
now() { date +%s.%N; }
sh -c "$drop"; a=$(now); cat "$dir/big" > /dev/null; b=$(now)
sh -c "$drop"; c=$(now)
found=$(find "$dir/tree" | wc -l)
find "$dir/tree" -type f -exec cat {} + > /dev/null
d=$(now)
[ "$found" -eq "$entries" ] || { echo "$dir: found $found entries, not $entries" >&2; exit 1; }
awk "BEGIN { printf \"%.2f %.2f\n\", $b - $a, $d - $c }"
SH
chmod +x "$work/measure.sh"
drop="sync; echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null"

echo "building and starting the guest (every share kind)..." >&2
kvmx up -q
for variant in "${variants[@]}"; do
    name=${variant%%|*}
    kvmx ssh -- "sudo mkdir -p /mnt/$name && sudo mount -t virtiofs $name /mnt/$name"
done
echo "copying the data to the guest's disk..." >&2
kvmx ssh -- "mkdir -p /home/user/data && cp -a /mnt/virtiofs/. /home/user/data/"
echo "default kind: $(kvmx ssh -- findmnt -no FSTYPE,OPTIONS /mnt/default-kind)" >&2
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

in_guest() { kvmx run . "$work/measure.sh" "$1" "$entries" "$drop"; }
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }

read -r disk_read disk_walk <<<"$(in_guest /home/user/data)"
printf '%-16s %9s %7s %9s %7s\n' "where" "read (s)" "ratio" "walk (s)" "ratio"
printf '%-16s %9s %7s %9s %7s\n' "guest disk" "$disk_read" "1.00" "$disk_walk" "1.00"
row() {
    printf '%-16s %9s %7s %9s %7s\n' "$1" "$2" "$(ratio "$2" "$disk_read")" "$3" "$(ratio "$3" "$disk_walk")"
}
measure() { # label guest-folder
    echo "measuring $1..." >&2
    read -r r w <<<"$(in_guest "$2")"
    row "$1" "$r" "$w"
}
for mount in default-kind 9p virtiofs; do
    measure "$mount" "/mnt/$mount"
done
for variant in "${nine_p[@]}"; do
    read -r msize cache <<<"$variant"
    measure "9p $((msize / 1024))K $cache" "/mnt/9p-$msize-$cache"
done
for variant in "${variants[@]}"; do
    measure "${variant%%|*}" "/mnt/${variant%%|*}"
done
# The guest's disk again: the load of a shared machine drifts during a run.
read -r r w <<<"$(in_guest /home/user/data)"
row "guest disk again" "$r" "$w"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
[ -n "${QUICK:-}" ] && exit 0
for kind in nfs smb reverse-sshfs; do
    measure "$kind" "/mnt/$kind"
done
echo "measuring sshfs (from the host)..." >&2
host_drop="cd '$work/project' && '$bin' ssh -- '$drop'"
read -r r w <<<"$("$work/measure.sh" "$work/sshfs/data" "$entries" "$host_drop")"
row "sshfs (host)" "$r" "$w"
