#!/bin/bash
# Measures a guest's boot to SSH and where its time goes, in one run:
#   up     = `kvmx up` of a stopped VM until SSH answers (the image is built
#            and booted once before, so first-boot work is not counted)
#   hand   = the same QEMU command line (read from the running QEMU) started
#            by hand, SSH polled as kvmx polls it (sshd's greeting looked for
#            every 0.1 s, then a login running `true`): the baseline
#   ratio  = up / hand
# and for each boot the moments seen on the serial console (host clock,
# seconds since QEMU was started), the guest's own view (`systemd-analyze`,
# `blame`, the kernel's timestamp of the root mount), the initramfs size,
# GRUB's menu wait and the kernel command line.
# With `--kernel cloud` the same is measured for an image with Debian's cloud
# kernel (`linux-image-cloud-amd64`) as the anchor, and generic / cloud is
# printed.
# usage: bench/boot.sh [--kernel generic|cloud] [--runs N] [path/to/kvmx]
# Builds the images first (set KVMX_CACHE_DIR to reuse a bootstrap cache).
# Uses TCG unless KVMX_ACCEL says otherwise.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
anchor=
runs=1
while [ $# -gt 0 ]; do
    case $1 in
        --kernel) shift; case ${1:-} in
            generic) anchor= ;;
            cloud) anchor=cloud ;;
            *) echo "--kernel takes generic or cloud" >&2; exit 2 ;;
        esac ;;
        --runs) shift; runs=$1 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
    shift
done
bin=${1:-$here/target/release/kvmx}
[ -x "$bin" ] || { echo "no kvmx at $bin (cargo build --release)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kvmx-bench.XXXXXX")
export KVMX_HOME=$work/home
export KVMX_CACHE_DIR=${KVMX_CACHE_DIR:-$work/cache}
export KVMX_ACCEL=${KVMX_ACCEL:-tcg}
watcher=
hand_pid=
cleanup() {
    [ -n "$watcher" ] && kill "$watcher" 2>/dev/null || true
    [ -n "$hand_pid" ] && kill -KILL -- "-$hand_pid" 2>/dev/null || true
    for vm in generic cloud; do "$bin" -q kill "$work/$vm" >/dev/null 2>&1 || true; done
    unshare --map-auto --map-root-user rm -rf "$work" 2>/dev/null || rm -rf "$work"
}
trap cleanup EXIT

now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk "BEGIN { printf \"%.2f\", $2 - $1 }"; }

# Makes the project of VM $1 (extra create packages in $2) and builds and
# boots it once, so the measured boots are not first boots.
prepare() {
    local vm=$1 packages=$2
    mkdir -p "$work/$vm"
    cat > "$work/$vm/kvmx.toml" <<TOML
[vm]
name = "boot-$vm"
[hardware]
memory = "1G"
[image]
size = "3G"
[create]
packages = [$packages]
[supervise]
boot_timeout = 900
TOML
    "$bin" -q up "$work/$vm" >/dev/null
    "$bin" ssh-config "$work/$vm" > "$work/$vm.ssh_config"
    "$bin" -q stop "$work/$vm" >/dev/null
}

# Follows the console log $1, writing each line behind the host time to $2.
watch_console() {
    local log=$1 out=$2
    : > "$out"
    tail -F -s 0.05 -n +1 "$log" 2>/dev/null | while IFS= read -r line; do
        printf '%s %s\n' "$EPOCHREALTIME" "${line//$'\r'/}"
    done >> "$out" &
    watcher=$!
}

stop_watch() {
    kill "$watcher" 2>/dev/null || true
    pkill -P "$watcher" 2>/dev/null || true
    watcher=
}

# Seconds from $2 (host start) to the first console line matching $3 in $1.
first_line() {
    awk -v t0="$2" -v re="$3" '$0 ~ re { printf "%.2f", $1 - t0; found = 1; exit }
        END { if (!found) printf "-" }' "$1"
}

# The guest's view while it runs: kernel start on the host clock (from the
# guest's uptime), root mount, systemd-analyze, blame, initramfs, GRUB.
guest_view() {
    local vm=$1 out=$2 t0=$3 before after uptime
    before=$(now)
    uptime=$("$bin" ssh "$work/$vm" -- cut -d' ' -f1 /proc/uptime)
    after=$(now)
    echo "kernel_start $(awk "BEGIN { printf \"%.2f\", ($before + $after) / 2 - $uptime - $t0 }")" > "$out"
    "$bin" ssh "$work/$vm" -- 'sudo dmesg | sed -n "s/^\[ *\([0-9.]*\)\] EXT4-fs (vda1): mounted.*/root_mount \1/p" | head -1
        echo "initramfs $(stat -L -c %s /initrd.img /boot/initrd.img 2>/dev/null | head -1)"
        echo "grub_timeout $(sed -n "s/^set timeout=//p" /boot/grub/grub.cfg 2>/dev/null | head -1)"
        echo "cmdline $(cat /proc/cmdline)"
        echo "analyze $(systemd-analyze 2>&1 | head -1)"
        systemd-analyze blame 2>/dev/null | head -10 | sed "s/^/blame /"
        systemd-analyze critical-chain ssh.service 2>/dev/null | tail -n +3 | sed "s/^/chain /"' >> "$out"
}

# Boots VM $1 with `kvmx up`, keeps its QEMU command line in $work/$1.args.
boot_kvmx() {
    local vm=$1 console t0 t1 pid
    console=$(find "$KVMX_HOME" -name console.log -path "*boot-$vm*" | head -1)
    rm -f "$console"
    watch_console "$console" "$work/$vm.up.console"
    t0=$(now)
    "$bin" -q up "$work/$vm" >/dev/null
    t1=$(now)
    pid=$("$bin" status "$work/$vm" --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | head -1)
    tr '\0' '\n' < "/proc/$pid/cmdline" > "$work/$vm.args"
    echo "$console" > "$work/$vm.console_path"
    guest_view "$vm" "$work/$vm.up.guest" "$t0"
    stop_watch
    echo "ssh $(since "$t0" "$t1")" >> "$work/$vm.up.guest"
    echo "t0 $t0" >> "$work/$vm.up.guest"
    "$bin" -q stop "$work/$vm" >/dev/null
}

# Whether sshd on port $1 sends its greeting within half a second.
greets() {
    timeout 0.5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3" 2>/dev/null | grep -q '^SSH-'
}

# Boots VM $1's QEMU command line by hand and polls SSH as kvmx does.
boot_hand() {
    local vm=$1 console t0 t1 port args=()
    console=$(cat "$work/$vm.console_path")
    mapfile -t args < "$work/$vm.args"
    port=$(grep -o 'hostfwd=tcp:127.0.0.1:[0-9]*-:22' "$work/$vm.args" | sed 's/.*:\([0-9]*\)-:22/\1/')
    # The sockets' folder, as kvmx makes it.
    for a in "${args[@]}"; do
        case $a in *path=*) p=${a#*path=}; p=${p%%,*}; mkdir -p -m 0700 "$(dirname "$p")" ;; esac
    done
    rm -f "$console"
    watch_console "$console" "$work/$vm.hand.console"
    t0=$(now)
    setsid "${args[@]}" </dev/null >/dev/null 2>"$work/$vm.hand.err" &
    hand_pid=$!
    until greets "$port" && ssh -F "$work/$vm.ssh_config" -o BatchMode=yes -p "$port" "kvmx-boot-$vm" true </dev/null >/dev/null 2>&1; do
        kill -0 "$hand_pid" 2>/dev/null || { echo "QEMU by hand exited:" >&2; cat "$work/$vm.hand.err" >&2; exit 1; }
        [ "$(since "$t0" "$(now)" | cut -d. -f1)" -lt 900 ] || { echo "no SSH by hand within 900 s" >&2; exit 1; }
        sleep 0.1
    done
    t1=$(now)
    stop_watch
    echo "ssh $(since "$t0" "$t1")" > "$work/$vm.hand.guest"
    echo "t0 $t0" >> "$work/$vm.hand.guest"
    ssh -F "$work/$vm.ssh_config" -o BatchMode=yes -p "$port" "kvmx-boot-$vm" sudo systemctl poweroff </dev/null >/dev/null 2>&1 || true
    for _ in $(seq 60); do kill -0 "$hand_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$hand_pid" 2>/dev/null || true
    wait "$hand_pid" 2>/dev/null || true
    hand_pid=
}

field() { sed -n "s/^$2 //p" "$1" | head -1; }

# The table of VM $1 (runs measured: $2).
report() {
    local vm=$1 up=$work/$vm.up hand=$work/$vm.hand
    local ut0 ht0
    ut0=$(field "$up.guest" t0)
    ht0=$(field "$hand.guest" t0)
    echo "== $vm kernel: where the time goes (seconds; host clock from start unless said)"
    printf '%-34s %10s %10s\n' "" "kvmx up" "by hand"
    row() { printf '%-34s %10s %10s\n' "$1" "$(first_line "$up.console" "$ut0" "$2")" "$(first_line "$hand.console" "$ht0" "$2")"; }
    row "console's first line" "."
    row "GRUB's first line" "GNU GRUB|Booting .*'$|Welcome to GRUB"
    row "kernel's first line" "Linux version"
    row "root mounted" "EXT4-fs \\(vda1\\): mounted"
    row "systemd's first line" "systemd\\[1\\]|Welcome to"
    row "ssh.service started" "Started.*ssh.service"
    printf '%-34s %10s %10s\n' "SSH answers" "$(field "$up.guest" ssh)" "$(field "$hand.guest" ssh)"
    printf '%-34s %10s\n' "kernel start (guest uptime)" "$(field "$up.guest" kernel_start)"
    printf '%-34s %10s\n' "root mounted (kernel clock)" "$(field "$up.guest" root_mount)"
    printf '%-34s %10s\n' "initramfs bytes" "$(field "$up.guest" initramfs)"
    printf '%-34s %10s\n' "GRUB menu wait (set timeout=)" "$(field "$up.guest" grub_timeout)"
    echo "QEMU -kernel: $(sed -n '/^-kernel$/{n;s|.*/||;p;q}' "$work/$vm.args" | grep . || echo "none (the disk's GRUB)")"
    echo "kernel command line: $(field "$up.guest" cmdline)"
    echo "systemd-analyze: $(field "$up.guest" analyze)"
    echo "systemd-analyze blame (top 10):"
    sed -n 's/^blame /   /p' "$up.guest"
    echo "systemd-analyze critical-chain ssh.service:"
    sed -n 's/^chain /   /p' "$up.guest"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Measures VM $1 $runs times; the last run's breakdown is reported.
measure() {
    local vm=$1 ups=() hands=()
    for _ in $(seq "$runs"); do
        boot_kvmx "$vm"
        boot_hand "$vm"
        ups+=("$(field "$work/$vm.up.guest" ssh)")
        hands+=("$(field "$work/$vm.hand.guest" ssh)")
    done
    report "$vm"
    up_median=$(printf '%s\n' "${ups[@]}" | median)
    hand_median=$(printf '%s\n' "${hands[@]}" | median)
    echo "up runs: ${ups[*]}   by hand runs: ${hands[*]}"
    eval "${vm}_up=$up_median"
    eval "${vm}_hand=$hand_median"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
prepare generic ""
[ -n "$anchor" ] && prepare cloud '"linux-image-cloud-amd64"'
measure generic
[ -n "$anchor" ] && measure cloud
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "generic  up ${generic_up} s  by hand ${generic_hand} s  ratio $(awk "BEGIN { printf \"%.3f\", $generic_up / $generic_hand }")"
if [ -n "$anchor" ]; then
    echo "cloud    up ${cloud_up} s  by hand ${cloud_hand} s  ratio $(awk "BEGIN { printf \"%.3f\", $cloud_up / $cloud_hand }")"
    echo "generic / cloud (kvmx up)  $(awk "BEGIN { printf \"%.3f\", $generic_up / $cloud_up }")"
fi
