#!/usr/bin/env bash
# The services of the Nessie backend on loopback, without Docker: moto (S3), Nessie, and optionally Trino.
#
#   services/stack.sh fetch [--without-trino]   download the pinned artifacts into the cache (idempotent)
#   services/stack.sh start [--without-trino]   fetch, start on free 127.0.0.1 ports, wait until healthy,
#                                               write services/.run/stack.env (source it for tests)
#   services/stack.sh stop                      stop what `start` started (pid files in services/.run)
#   services/stack.sh status                    what runs, where
#   services/stack.sh restart-nessie [--kill]   stop Nessie (SIGTERM, or SIGKILL with --kill) and start it again
#                                               on the same ports and the same RocksDB store; wait until healthy
#
# Nessie keeps its refs and commits in RocksDB under <run folder>/nessie/rocksdb (the version store
# docker-compose.yml puts on a named volume), so a restarted or killed Nessie loses nothing. `start`
# begins with an empty store, because moto keeps its objects in memory: refs that outlived the S3 data
# would point at nothing.
#
# Versions live in services/versions.env. Environment knobs:
#   CASCADE_SERVICES_CACHE    download cache (default ~/.cache/cascade-ci/services)
#   CASCADE_SERVICES_RUN      run folder: configs, logs, pid files, stack.env (default services/.run)
#   CASCADE_SERVICES_TIMEOUT  seconds each service may take to become healthy (default 180)
#   CASCADE_NESSIE_HEAP       Nessie's maximum heap: its object cache and requests (default 1g, see the README)
#   PYTHON                    interpreter for moto's venv (default python3)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
RUN="${CASCADE_SERVICES_RUN:-$HERE/.run}"
TIMEOUT="${CASCADE_SERVICES_TIMEOUT:-180}"
NESSIE_HEAP="${CASCADE_NESSIE_HEAP:-1g}"
# Test-only credentials for the throwaway moto server; Nessie reads them through a secret reference.
S3_ACCESS_KEY="${STACK_S3_ACCESS_KEY:-cascade-test}"
S3_SECRET_KEY="${STACK_S3_SECRET_KEY:-cascade-test-secret}"

TRINO_HOME="$CACHE/trino-server-$TRINO_VERSION"
MOTO_VENV="$CACHE/moto-$MOTO_VERSION"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# -- fetch ----------------------------------------------------------------------------------------

fetch_moto() {
  [ -f "$MOTO_VENV/.installed" ] && return 0
  log "installing moto[server]==$MOTO_VERSION into $MOTO_VENV"
  rm -rf "$MOTO_VENV"
  "$PYTHON" -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" \
    || die "could not install moto[server]==$MOTO_VERSION"
  touch "$MOTO_VENV/.installed"
}

fetch_trino() {
  [ -f "$TRINO_HOME/.installed" ] && return 0
  mvn_copy "io.trino:trino-server-core:$TRINO_VERSION:tar.gz" "trino-server-core-$TRINO_VERSION.tar.gz"
  mvn_copy "io.trino:trino-iceberg:$TRINO_VERSION:zip" "trino-iceberg-$TRINO_VERSION.zip"
  log "unpacking Trino $TRINO_VERSION"
  rm -rf "$TRINO_HOME" "$TRINO_HOME.tmp"
  mkdir -p "$TRINO_HOME.tmp/plugin/iceberg"
  tar -xzf "$CACHE/trino-server-core-$TRINO_VERSION.tar.gz" -C "$TRINO_HOME.tmp" --strip-components=1
  local unpack="$TRINO_HOME.tmp/.iceberg-zip"
  mkdir -p "$unpack"
  (cd "$unpack" && "$JAR_TOOL" xf "$CACHE/trino-iceberg-$TRINO_VERSION.zip")
  # The plugin zip holds one folder (trino-iceberg-<ver>/) of jars: they go to plugin/iceberg.
  find "$unpack" -name '*.jar' -exec mv {} "$TRINO_HOME.tmp/plugin/iceberg/" \;
  rm -rf "$unpack"
  touch "$TRINO_HOME.tmp/.installed"
  mv "$TRINO_HOME.tmp" "$TRINO_HOME"
}

cmd_fetch() {
  local trino="$1"
  mkdir -p "$CACHE"
  fetch_moto
  fetch_nessie
  if [ "$trino" = yes ]; then fetch_trino; fi
  log "cache ready: $CACHE"
}

# -- helpers --------------------------------------------------------------------------------------

# wait_for name url check : polls until `check` accepts the body of GET url, the process dies, or timeout;
# records the seconds from launch to healthy in STARTUP[name]
wait_for() {
  local name="$1" url="$2" check="$3" start deadline body
  start="${LAUNCHED[$name]}"
  deadline=$(($(date +%s) + TIMEOUT))
  while :; do
    if ! alive "$name"; then
      fail "$name exited while starting"
    fi
    if body="$(curl -s --max-time 5 "$url" 2>/dev/null)" && $check "$body"; then
      local took=$(($(now_ms) - start))
      STARTUP["$name"]="$(awk "BEGIN { printf \"%.1f\", $took / 1000 }")"
      log "$name is up at $url after ${STARTUP[$name]} s"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      fail "$name did not become healthy within ${TIMEOUT}s ($url)"
    fi
    sleep 0.5
  done
}

fail() {
  log "ERROR: $*"
  local f
  for f in "$RUN"/*.log "$RUN"/trino/data/var/log/server.log; do
    [ -f "$f" ] || continue
    printf '\n===== last lines of %s =====\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
  $ON_FAIL >/dev/null 2>&1 || true
  exit 1
}
ON_FAIL=cmd_stop # what a failure stops: everything while starting; restart-nessie stops only Nessie

any_body() { return 0; }
nessie_ready() { [[ "$1" == *'"defaultBranch"'* ]]; }
trino_ready() { [[ "$1" == *'"starting":false'* ]]; }

# -- start ----------------------------------------------------------------------------------------

start_moto() {
  local port="$1"
  launch moto "$RUN" "$MOTO_VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$port"
  wait_for moto "http://127.0.0.1:$port/moto-api/data.json" any_body
  AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" "$MOTO_VENV/bin/python" - \
    "http://127.0.0.1:$port" "$S3_BUCKET" "$S3_REGION" <<'PY' || fail "could not create the S3 bucket"
import sys

import boto3

endpoint, bucket, region = sys.argv[1:]
boto3.client("s3", endpoint_url=endpoint, region_name=region).create_bucket(Bucket=bucket)
PY
}

start_nessie() {
  local port="$1" mgmt="$2" s3="$3" dir="$RUN/nessie"
  mkdir -p "$dir/config"
  # Quarkus reads ./config/application.properties: the S3 keys stay off the command line.
  cat >"$dir/config/application.properties" <<EOF
quarkus.http.host=127.0.0.1
quarkus.http.port=$port
quarkus.management.host=127.0.0.1
quarkus.management.port=$mgmt
quarkus.log.console.level=INFO
quarkus.otel.sdk.disabled=true
nessie.version.store.type=ROCKSDB
nessie.version.store.persist.rocks.database-path=$dir/rocksdb
nessie.server.default-branch=main
nessie.catalog.default-warehouse=$NESSIE_WAREHOUSE
nessie.catalog.warehouses.$NESSIE_WAREHOUSE.location=s3://$S3_BUCKET/
nessie.catalog.service.s3.default-options.endpoint=http://127.0.0.1:$s3/
nessie.catalog.service.s3.default-options.path-style-access=true
nessie.catalog.service.s3.default-options.region=$S3_REGION
nessie.catalog.service.s3.default-options.request-signing-enabled=false
nessie.catalog.service.s3.default-options.access-key=urn:nessie-secret:quarkus:cascade-s3
cascade-s3.name=$S3_ACCESS_KEY
cascade-s3.secret=$S3_SECRET_KEY
EOF
  launch_nessie
}

launch_nessie() { # Nessie on the config (and store) in $RUN/nessie
  launch nessie "$RUN/nessie" "$NESSIE_JAVA_HOME/bin/java" -Xms128m "-Xmx$NESSIE_HEAP" -XX:+UseSerialGC \
    -XX:+ExitOnOutOfMemoryError -jar "$NESSIE_JAR"
}

start_trino() {
  local port="$1" dir="$RUN/trino"
  mkdir -p "$dir/etc/catalog" "$dir/data"
  cat >"$dir/etc/node.properties" <<EOF
node.environment=cascade
node.id=cascade-$(hostname)-$$
node.data-dir=$dir/data
node.internal-address=127.0.0.1
node.bind-ip=127.0.0.1
EOF
  cat >"$dir/etc/jvm.config" <<EOF
-server
-Xmx1G
-XX:InitialRAMPercentage=5
-XX:+UseG1GC
-XX:+ExitOnOutOfMemoryError
-Djdk.attach.allowAttachSelf=true
EOF
  cat >"$dir/etc/config.properties" <<EOF
coordinator=true
node-scheduler.include-coordinator=true
http-server.http.port=$port
discovery.uri=http://127.0.0.1:$port
catalog.management=dynamic
catalog.store=memory
query.max-memory=512MB
query.max-memory-per-node=256MB
EOF
  cat >"$dir/etc/log.properties" <<EOF
io.trino=INFO
EOF
  # The S3 keys in Trino's environment: catalogs may name them as ${ENV:AWS_SECRET_ACCESS_KEY}
  # (TRINO_CATALOG_SECRETS=env), so that no catalog property holds a key.
  launch trino "$dir" env JAVA_HOME="$TRINO_JAVA_HOME" PATH="$TRINO_JAVA_HOME/bin:$PATH" \
    AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
    "$TRINO_HOME/bin/launcher" run --etc-dir="$dir/etc" --data-dir="$dir/data"
}

cmd_start() {
  local trino="$1"
  if alive nessie || alive moto || alive trino; then
    log "already running (services/stack.sh stop first):"
    cmd_status
    return 0
  fi
  cmd_fetch "$trino"
  mkdir -p "$RUN"
  rm -rf "$RUN/nessie" "$RUN/trino" "$RUN"/*.log "$RUN"/*.pid "$RUN/stack.env"
  declare -gA STARTUP=() LAUNCHED=()
  local s3_port nessie_port mgmt_port trino_port=""
  s3_port="$(free_port)"
  nessie_port="$(free_port)"
  mgmt_port="$(free_port)"
  start_moto "$s3_port"
  # Nessie and Trino boot side by side; Trino only reaches Nessie when a catalog is created.
  start_nessie "$nessie_port" "$mgmt_port" "$s3_port"
  if [ "$trino" = yes ]; then
    trino_port="$(free_port)"
    start_trino "$trino_port"
  fi
  wait_for nessie "http://127.0.0.1:$nessie_port/api/v2/config" nessie_ready
  if [ "$trino" = yes ]; then
    wait_for trino "http://127.0.0.1:$trino_port/v1/info" trino_ready
  fi
  {
    echo "# written by services/stack.sh start; source it (set -a; . services/.run/stack.env; set +a)"
    echo "NESSIE_URI=http://127.0.0.1:$nessie_port"
    echo "NESSIE_WAREHOUSE=$NESSIE_WAREHOUSE"
    echo "S3_ENDPOINT=http://127.0.0.1:$s3_port"
    echo "S3_REGION=$S3_REGION"
    echo "S3_BUCKET=$S3_BUCKET"
    echo "AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY"
    echo "AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY"
    echo "AWS_REGION=$S3_REGION"
    [ -n "$trino_port" ] && echo "TRINO_URI=http://127.0.0.1:$trino_port"
    local name
    for name in "${!STARTUP[@]}"; do
      echo "STACK_STARTUP_SECONDS_${name^^}=${STARTUP[$name]}"
    done
  } >"$RUN/stack.env"
  log "ready: $RUN/stack.env"
}

# -- stop / status --------------------------------------------------------------------------------

# restart-nessie [KILL|TERM]: the same Nessie again (config, ports, RocksDB store), e.g. after a crash
cmd_restart_nessie() {
  local signal="$1" config="$RUN/nessie/config/application.properties" port
  [ -f "$config" ] || die "no Nessie was started in $RUN (services/stack.sh start first)"
  port="$(sed -n 's/^quarkus.http.port=//p' "$config")"
  declare -gA STARTUP=() LAUNCHED=()
  ON_FAIL="stop_one nessie"
  stop_one nessie "$signal"
  launch_nessie
  wait_for nessie "http://127.0.0.1:$port/api/v2/config" nessie_ready
}

cmd_stop() {
  stop_one trino
  stop_one nessie
  stop_one moto
  rm -f "$RUN/stack.env"
}

cmd_status() {
  local name state=0
  for name in moto nessie trino; do
    if alive "$name"; then
      echo "$name: running (pid $(cat "$RUN/$name.pid"))"
    elif [ -f "$RUN/$name.pid" ]; then
      echo "$name: dead (stale pid file)"
      state=1
    else
      echo "$name: stopped"
    fi
  done
  [ -f "$RUN/stack.env" ] && grep -E '_URI=|S3_ENDPOINT=|STARTUP' "$RUN/stack.env"
  return $state
}

# -- main -----------------------------------------------------------------------------------------

JAR_TOOL="$(command -v jar || echo "$TRINO_JAVA_HOME/bin/jar")"
command="${1:-}"
shift || true
with_trino=yes
nessie_signal=TERM
for arg in "$@"; do
  case "$arg" in
    --without-trino) with_trino=no ;;
    --kill) nessie_signal=KILL ;;
    *) die "unknown option $arg" ;;
  esac
done
case "$command" in
  fetch) cmd_fetch "$with_trino" ;;
  start) cmd_start "$with_trino" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart-nessie) cmd_restart_nessie "$nessie_signal" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
