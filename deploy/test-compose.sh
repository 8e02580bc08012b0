#!/usr/bin/env bash
# The container test: from this checkout, build the image without pulling anything, make
# the cluster's certificates (deploy/make-certs.sh, twice: the second run changes
# nothing), bring the compose cluster up with TLS, see it healthy with `banyan ctl status`
# showing 3 core nodes and 2 branches (both sites leased), see a plaintext client refused,
# cut one site off from the core and heal it (the core fences the site, the branch serves
# it alone, then reconciles and is leased again), run every `banyan drill` scenario
# against it, stop the cluster and check every node stopped cleanly (exit 0).
# Skips, saying so, where no Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every credential is named on the command line, none comes from the caller's environment.
unset BANYAN_CERTS_DIR BANYAN_INSECURE BANYAN_TOKEN BANYAN_USER BANYAN_ENDPOINT

if ! docker info >/dev/null 2>&1; then
    echo "container test SKIPPED: no Docker engine answers here"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
else
    echo "container test FAILED: Docker answers but neither 'docker compose' nor docker-compose is installed"
    exit 1
fi

project="banyan-ci-$$"
image="banyan:ci-$$"
certs="$(mktemp -d -t banyan-certs.XXXXXX)"
# The group the nodes read their keys through (deploy/make-certs.sh, compose.yaml).
if [ "$(id -u)" = 0 ]; then certs_gid=10001; else certs_gid="$(id -g)"; fi
compose() {
    BANYAN_IMAGE="$image" BANYAN_CERTS_DIR_HOST="$certs" BANYAN_CERTS_GID="$certs_gid" \
        "${compose_cmd[@]}" -f deploy/compose.yaml -p "$project" "$@"
}
ctl() { target/release/banyan ctl --endpoint "$endpoint" --certs-dir "$certs" "$@"; }
cleanup() {
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    docker image rm -f "$image" >/dev/null 2>&1 || true
    rm -rf "$certs"
}
trap cleanup EXIT

echo "-- building the release binary and the image (no registry needed)"
cargo build --release --bin banyan
deploy/base/make-base.sh target/release/banyan banyan-base:local
DOCKER_BUILDKIT=0 docker build -q -f deploy/Dockerfile \
    --build-arg BASE_IMAGE=banyan-base:local -t "$image" . >/dev/null

echo "-- making the cluster's certificates"
make_certs() {
    BANYAN_BIN=target/release/banyan BANYAN_CERTS_GID="$certs_gid" deploy/make-certs.sh "$certs" >/dev/null
}
fingerprint() { (cd "$certs" && sha256sum -- * && stat -c '%n %a %u %g' -- *); }
make_certs
made="$(fingerprint)"
make_certs
if [ "$(fingerprint)" != "$made" ]; then
    echo "container test FAILED: deploy/make-certs.sh changed certificates that existed"
    exit 1
fi

echo "-- starting 3 core nodes and 2 branches"
compose up -d
services=(core1 core2 core3 branch-emea branch-apac)
deadline=$((SECONDS + 180))
for service in "${services[@]}"; do
    id="$(compose ps -q "$service")"
    until [ "$(docker inspect --format '{{.State.Health.Status}}' "$id")" = healthy ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "container test FAILED: $service is not healthy"
            compose logs --tail 40
            exit 1
        fi
        sleep 1
    done
    echo "   $service healthy"
done

endpoint="$(compose port core1 7000)"
until status="$(ctl status --json 2>/dev/null)" &&
    python3 - "$status" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
voters = [n for n in s["nodes"] if n["voter"]]
learners = [n for n in s["nodes"] if not n["voter"]]
sites = {x["site"]: x for x in s["sites"]}
ok = (s["leader"] is not None and len(voters) == 3 and len(learners) == 2
      and all(sites.get(site, {}).get("mode") == "leased" for site in ("emea", "apac")))
sys.exit(0 if ok else 1)
PY
do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "container test FAILED: ctl status does not show 3 voters, 2 branches and both sites leased"
        ctl status || true
        exit 1
    fi
    sleep 1
done
ctl status

echo "-- a client without TLS is refused"
# Plaintext to the TLS port must fail; exit status 2 would be a usage error, not a refusal.
refused=0
target/release/banyan ctl --endpoint "$endpoint" --insecure --timeout 5s status >/dev/null 2>&1 ||
    refused=$?
if [ "$refused" = 0 ] || [ "$refused" = 2 ]; then
    echo "container test FAILED: core1's gRPC port answered a plaintext client (exit $refused)"
    exit 1
fi
echo "   a plaintext client got no answer from core1"

echo "-- cutting emea off from the core (its WAN network) and healing it"
site_mode() {
    ctl status --json 2>/dev/null |
        python3 -c 'import json,sys; s=json.load(sys.stdin); print(next(x["mode"] for x in s["sites"] if x["site"]=="emea"))'
}
site_is() { test "$(site_mode)" = "$1"; }
branch_says() { target/release/banyan probe --http "$branch_http" 2>/dev/null | grep -q "$1"; }
wait_for() {
    local what="$1"; shift
    local until=$((SECONDS + 60))
    until "$@"; do
        if [ "$SECONDS" -ge "$until" ]; then
            echo "container test FAILED: $what"
            compose logs --tail 40 branch-emea
            exit 1
        fi
        sleep 1
    done
}
branch_http="$(compose port branch-emea 8080)"
branch_id="$(compose ps -q branch-emea)"
docker network disconnect "${project}_wan-emea" "$branch_id"
wait_for "the core fences emea once its lease runs out" site_is lapsed
wait_for "the emea branch serves its site on its own" branch_says "on its own"
echo "   emea lapsed at the core; the branch serves its site on its own"
docker network connect --alias branch-emea "${project}_wan-emea" "$branch_id"
wait_for "emea reconciles and holds its lease again" site_is leased
wait_for "the emea branch serves through the core again" branch_says "through the core"
echo "   emea reconciled and leased again"

echo "-- failover drills against the running deployment"
# Each drill checks the cluster healthy first, runs its workload, breaks and heals the
# deployment, and exits non-zero when an invariant broke or the cluster did not recover.
for scenario in leader-kill leader-pause follower-restart quorum-loss branch-partition rolling-restart; do
    if ! target/release/banyan drill "$scenario" --target compose --project "$project" \
        --certs-dir "$certs" --duration "${BANYAN_DRILL_DURATION:-30s}" --out target/drill-reports; then
        echo "container test FAILED: drill $scenario (reports in target/drill-reports)"
        compose logs --tail 40
        exit 1
    fi
done

echo "-- stopping"
compose stop
for service in "${services[@]}"; do
    id="$(compose ps -q "$service")"
    code="$(docker inspect --format '{{.State.ExitCode}}' "$id")"
    if [ "$code" != 0 ]; then
        echo "container test FAILED: $service exited with $code"
        compose logs --tail 40 "$service"
        exit 1
    fi
done
echo "container test passed: image built locally, cluster healthy over TLS, plaintext refused, six drills passed, clean shutdown"
