#!/bin/sh
# Make a Debian 13 (trixie) root holding Debian's pypy3 (PyPy 7.3.19, which
# is Python 3.11) for the benchmark's PyPy runs, on a machine whose own pypy3
# is too old for echogate (Debian 12's is Python 3.9). Needs root, and
# Debian's package mirror (debootstrap fetches from it); about 650 MB.
# bench/in_root.sh runs commands inside it.
#
# usage: bench/pypy_root.sh ROOT
set -e
root=$1
[ -n "$root" ] || { echo "usage: $0 ROOT" >&2; exit 2; }
if [ ! -x "$root/usr/bin/pypy3" ]; then
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
    mkdir -p "$root"
    debootstrap --variant=minbase \
        --include=pypy3,pypy3-dev,pypy3-venv,gcc,libc6-dev,libpq-dev,ca-certificates \
        trixie "$root" http://deb.debian.org/debian
fi
# What pip needs inside: this machine's name servers, certificate
# authorities and pip settings.
cp /etc/resolv.conf "$root/etc/resolv.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
"$(dirname "$0")/in_root.sh" "$root" /usr/bin/pypy3 --version
