#!/usr/bin/env bash
# Makes the certificates deploy/compose.yaml's nodes read and the tools on the host
# present: the cluster's CA and token key pair, core1-core3 (nodes 1-3), branch-emea
# (node 101, site emea), branch-apac (node 102, site apac), each valid for its service
# name, localhost and 127.0.0.1, and the client certificate `admin`. Only what is missing
# is made, so running it again changes nothing.
#
#   deploy/make-certs.sh [DIR]        (default: deploy/certs, where compose.yaml looks)
#
# It runs BANYAN_BIN, else target/release/banyan, else `banyan` on the PATH, else the
# image BANYAN_IMAGE (default banyan:local) with `docker run`. The node keys, and no
# other key, are then made readable to the group BANYAN_CERTS_GID, which every node in
# compose.yaml joins: by default 10001 (the image's group) when run as root, else your
# own primary group; export the same BANYAN_CERTS_GID for docker-compose then.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "${1:-$here/certs}"
dir="$(cd "${1:-$here/certs}" && pwd)"
if [ "$(id -u)" = 0 ]; then
    gid="${BANYAN_CERTS_GID:-10001}"
else
    gid="${BANYAN_CERTS_GID:-$(id -g)}"
fi

certs_dir="$dir"
if [ -n "${BANYAN_BIN:-}" ]; then
    banyan=("$BANYAN_BIN")
elif [ -x "$here/../target/release/banyan" ]; then
    banyan=("$here/../target/release/banyan")
elif command -v banyan >/dev/null 2>&1; then
    banyan=(banyan)
else
    # The image's entrypoint is the binary; the directory is mounted at /certs.
    banyan=(docker run --rm --user "$(id -u):$(id -g)" -v "$dir:/certs" "${BANYAN_IMAGE:-banyan:local}")
    certs_dir=/certs
fi
certs() {
    local what="$1"
    shift
    "${banyan[@]}" certs "$what" --certs-dir "$certs_dir" "$@"
}
missing() {
    local file
    for file in "$@"; do
        [ -e "$dir/$file" ] || return 0
    done
    return 1
}
issue() { # issue KIND ID SERVICE [FLAG...]
    local kind="$1" id="$2" service="$3"
    shift 3
    if missing "node.$id.crt" "node.$id.key"; then
        certs "$kind" --id "$id" --host "$service" --host localhost --host 127.0.0.1 "$@"
    fi
}

if missing ca.crt ca.key token.key token.pub; then
    certs ca
fi
issue node 1 core1
issue node 2 core2
issue node 3 core3
issue branch 101 branch-emea --site emea
issue branch 102 branch-apac --site apac
if missing client.admin.crt client.admin.key; then
    certs client --name admin --role admin
fi

# The nodes (uid 10001, in group $gid) read the certificates and their own key; ca.key,
# token.key and the client keys stay readable by their owner alone.
chgrp "$gid" "$dir" "$dir"/node.*.key
chmod 0750 "$dir"
chmod 0640 "$dir"/node.*.key

echo "certificates in $dir (node keys readable by group $gid)"
if [ "$dir" != "$here/certs" ]; then
    echo "for docker-compose: export BANYAN_CERTS_DIR_HOST=$dir"
fi
if [ "$gid" != 10001 ]; then
    echo "for docker-compose: export BANYAN_CERTS_GID=$gid"
fi
