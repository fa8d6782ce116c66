# Run as root (sudo) in the first disposable of a template, just before its
# state is saved. It changes only that disposable's throwaway disk, never
# the template. A login into a guest just restored under TCG runs on cold
# translated code, so every program it starts counts.
set -e

# The loop that sets the clock on restore (see clock.rs): the port stays
# open, so reads block until the host writes its time. Perl (essential in
# Debian) sets it with no new process: clock_settime is syscall 227 on
# x86_64. Without perl, date does.
port=/dev/virtio-ports/kvmx.clock
if command -v perl > /dev/null; then
    systemd-run --quiet --collect --unit=kvmx-clock perl -e '
        open(my $port, "+<", $ARGV[0]) or die "$ARGV[0]: $!";
        select((select($port), $| = 1)[0]);
        while (my $now = <$port>) {
            my ($seconds, $nanoseconds) = $now =~ /^(\d+)\.(\d{9})/ or next;
            syscall(227, 0, pack("q q", $seconds, $nanoseconds)) == 0
                or warn "clock_settime: $!";
            print $port "set\n";
        }' "$port"
else
    systemd-run --quiet --collect --unit=kvmx-clock sh -c '
        exec 3<> "$0"
        while read -r now <&3; do date -u -s "@$now" > /dev/null; echo set >&3; done' "$port"
fi

# kvmx's agent (see agent.rs), when kvmx copied it here: restored
# siblings run their command through it, with no login.
if [ -f /tmp/kvmx-agent ]; then
    install -D -m 0755 /tmp/kvmx-agent /usr/local/libexec/kvmx-agent
    rm -f /tmp/kvmx-agent
    systemd-run --quiet --collect --unit=kvmx-agent \
        /usr/local/libexec/kvmx-agent serve /dev/virtio-ports/org.kvmx.agent
fi

# Timers would catch up on the days a state may wait between restores.
systemctl stop timers.target '*.timer'

# sshd: no PAM session (about a second per login here), but the two things
# it gave a session that programs use: the runtime folder and the locale.
conf=/etc/ssh/sshd_config.d/00-kvmx-disposable.conf
mkdir -p /etc/ssh/sshd_config.d
locale=$(unset LANG; if [ -r /etc/default/locale ]; then . /etc/default/locale; fi; echo "${LANG:-}")
{
    echo 'UsePAM no'
    echo "SetEnv XDG_RUNTIME_DIR=/run/user/$SUDO_UID"
    if [ -n "$locale" ]; then echo "SetEnv LANG=$locale"; fi
} > "$conf"
# An older sshd has no SetEnv.
sshd -t 2> /dev/null || echo 'UsePAM no' > "$conf"

# sshd: no re-execution of itself for each connection (about a second
# more). Debian's service reads its options from this file.
echo 'SSHD_OPTS=-r' >> /etc/default/ssh
systemctl restart ssh.service || systemctl restart sshd.service
