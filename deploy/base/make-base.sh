#!/usr/bin/env bash
# Makes a minimal base image for Banyan from this machine's own files, for hosts that
# cannot pull one (no registry reachable): the C runtime the binary links against, a
# non-root user, and /tmp. Nothing else: no shell, no package manager.
#
#   deploy/base/make-base.sh [BINARY] [TAG]     (defaults: target/release/banyan banyan-base:local)
#
# Where a registry is reachable, any glibc-based image will do instead (the Dockerfile's
# default is debian:bookworm-slim).
set -euo pipefail

binary="${1:-target/release/banyan}"
tag="${2:-banyan-base:local}"

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

# Every shared library the binary loads, at the path the loader looks for it.
ldd "$binary" | awk '/=>/ { print $3 } /^\s*\/lib/ { print $1 }' | sort -u | while read -r lib; do
    [ -e "$lib" ] || continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
# The dynamic loader is also found through /lib64 on x86_64.
if [ -e /lib64/ld-linux-x86-64.so.2 ]; then
    mkdir -p "$rootfs/lib64"
    cp -L /lib64/ld-linux-x86-64.so.2 "$rootfs/lib64/"
fi

mkdir -p "$rootfs/etc" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
banyan:x:10001:10001:Banyan:/var/lib/banyan:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
banyan:x:10001:
GROUP
echo "hosts: files dns" > "$rootfs/etc/nsswitch.conf"

tar -C "$rootfs" -c . | docker import \
    --message "Banyan base: C runtime and a non-root user, from the build host" - "$tag" >/dev/null
echo "$tag"
