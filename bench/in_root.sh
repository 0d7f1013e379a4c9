#!/bin/sh
# Run a command inside a Debian root made by bench/pypy_root.sh, with this
# machine's /proc, /sys, /dev, /run, /tmp, /work and /root at the same
# paths, from the current directory, in a mount namespace of its own (the
# mounts go with the process). Every step execs: the command keeps this
# process's PID, so the benchmark measures and stops it as any other.
#
# usage: bench/in_root.sh ROOT COMMAND [ARGUMENT...]
set -e
root=$1
shift
exec unshare --mount --propagation private /bin/sh -c '
set -e
root=$1
shift
for d in /proc /sys /dev /run /tmp /work /root; do
    [ -d "$d" ] && mkdir -p "$root$d" && mount --rbind "$d" "$root$d"
done
exec chroot "$root" /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$PWD" "$@"
' in_root "$root" "$@"
