#!/usr/bin/env bash
# A token issuer (Keycloak) and a Nessie that demands its tokens, on loopback, without Docker.
#
#   services/auth.sh fetch    download Keycloak (Maven Central) and Nessie into the cache (idempotent)
#   services/auth.sh start    start both on free 127.0.0.1 ports, wait until healthy, write <run>/auth.env
#   services/auth.sh stop     stop what `start` started
#
# Keycloak (built once at fetch for an in-memory database, then `start --optimized`) imports realm
# `cascade` from services/keycloak/cascade-realm.json (docker-compose.yml's too): four client-credentials
# clients, cascade-reader, cascade-writer, cascade-pr and cascade-promoter, whose secrets are made up at each start,
# given to Keycloak through the environment and written to auth.env (mode 600). Nessie (in-memory version
# store) validates the bearer tokens against the realm (Quarkus OIDC) and applies the authorization rules
# of the README's "Security model". Its warehouse is s3://$S3_BUCKET/auth/ on the S3 the environment names
# (S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; e.g. the stack's moto).
#
# Environment knobs:
#   CASCADE_SERVICES_CACHE    download cache (default ~/.cache/cascade-ci/services)
#   CASCADE_AUTH_RUN          run folder: configs, logs, pid files, auth.env (default services/.run-auth)
#   CASCADE_SERVICES_TIMEOUT  seconds each service may take to become healthy (default 240)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
RUN="${CASCADE_AUTH_RUN:-$HERE/.run-auth}"
TIMEOUT="${CASCADE_SERVICES_TIMEOUT:-240}"
KEYCLOAK_HOME="$CACHE/keycloak-$KEYCLOAK_VERSION"
REALM=cascade
# Build-time options of Keycloak (kc.sh build); `start --optimized` then boots without rebuilding.
KEYCLOAK_BUILD=(--db=dev-mem --health-enabled=true)
JIT_QUICK="-XX:TieredStopAtLevel=1" # C1 only: the JVMs live for one test session, start-up time is what counts
CLIENTS=(cascade-reader cascade-writer cascade-pr cascade-promoter)

log() { printf '[auth] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

cmd_fetch() {
  mkdir -p "$CACHE"
  fetch_nessie
  if [ ! -x "$KEYCLOAK_HOME/bin/kc.sh" ]; then
    mvn_copy "org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" "keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
    log "unpacking Keycloak $KEYCLOAK_VERSION"
    rm -rf "$KEYCLOAK_HOME.tmp"
    mkdir -p "$KEYCLOAK_HOME.tmp"
    (cd "$KEYCLOAK_HOME.tmp" && "$PYTHON" -m zipfile -e "$CACHE/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" .)
    chmod +x "$KEYCLOAK_HOME.tmp/keycloak-$KEYCLOAK_VERSION/bin/"*.sh
    mv "$KEYCLOAK_HOME.tmp/keycloak-$KEYCLOAK_VERSION" "$KEYCLOAK_HOME"
    rm -rf "$KEYCLOAK_HOME.tmp"
  fi
  if [ ! -f "$KEYCLOAK_HOME/.built" ]; then # build once, so that each start skips Quarkus' augmentation
    log "building Keycloak $KEYCLOAK_VERSION for this configuration"
    JAVA_HOME="$NESSIE_JAVA_HOME" "$KEYCLOAK_HOME/bin/kc.sh" build "${KEYCLOAK_BUILD[@]}" >"$CACHE/keycloak-build.log" 2>&1 \
      || die "kc.sh build failed: $CACHE/keycloak-build.log"
    touch "$KEYCLOAK_HOME/.built"
  fi
}

secret() { "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))'; }

fail() {
  log "ERROR: $*"
  local f
  for f in "$RUN"/*.log; do
    [ -f "$f" ] || continue
    printf '\n===== last lines of %s =====\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
  cmd_stop >/dev/null 2>&1 || true
  exit 1
}

wait_for() { # name url: until GET url answers 2xx, the process dies, or the timeout
  local name="$1" url="$2" deadline
  deadline=$(($(date +%s) + TIMEOUT))
  until curl -fs --max-time 5 -o /dev/null "$url"; do
    alive "$name" || fail "$name exited while starting"
    [ "$(date +%s)" -lt "$deadline" ] || fail "$name did not become healthy within ${TIMEOUT}s ($url)"
    sleep 0.5
  done
  log "$name is up after $(($(date +%s) - STARTED)) s"
}

start_keycloak() {
  local port="$1" management="$2"
  # Keycloak imports from <its home>/data/import; the file's ${CASCADE_*_SECRET} come from the environment.
  mkdir -p "$KEYCLOAK_HOME/data/import"
  cp "$HERE/keycloak/$REALM-realm.json" "$KEYCLOAK_HOME/data/import/"
  launch keycloak "$RUN" env JAVA_HOME="$NESSIE_JAVA_HOME" CASCADE_READER_SECRET="${SECRETS[cascade-reader]}" \
    CASCADE_WRITER_SECRET="${SECRETS[cascade-writer]}" CASCADE_PR_SECRET="${SECRETS[cascade-pr]}" CASCADE_PROMOTER_SECRET="${SECRETS[cascade-promoter]}" JAVA_OPTS_KC_HEAP="-Xms64m -Xmx512m" \
    JAVA_OPTS_APPEND="$JIT_QUICK" "$KEYCLOAK_HOME/bin/kc.sh" start --optimized --import-realm --http-enabled=true \
    --hostname-strict=false --cache=local --http-host=127.0.0.1 --http-port="$port" --http-management-port="$management"
}

start_nessie() {
  local port="$1" management="$2" issuer="$3" dir="$RUN/nessie" client
  mkdir -p "$dir/config"
  {
    cat <<EOF
quarkus.http.host=127.0.0.1
quarkus.http.port=$port
quarkus.management.host=127.0.0.1
quarkus.management.port=$management
quarkus.otel.sdk.disabled=true
nessie.version.store.type=IN_MEMORY
nessie.server.default-branch=main
nessie.catalog.default-warehouse=$NESSIE_WAREHOUSE
nessie.catalog.warehouses.$NESSIE_WAREHOUSE.location=s3://$S3_BUCKET/auth/
nessie.catalog.service.s3.default-options.endpoint=$S3_ENDPOINT/
nessie.catalog.service.s3.default-options.path-style-access=true
nessie.catalog.service.s3.default-options.region=$S3_REGION
nessie.catalog.service.s3.default-options.request-signing-enabled=false
nessie.catalog.service.s3.default-options.access-key=urn:nessie-secret:quarkus:cascade-s3
cascade-s3.name=$AWS_ACCESS_KEY_ID
cascade-s3.secret=$AWS_SECRET_ACCESS_KEY
# Authentication: bearer tokens of realm $REALM, checked by Quarkus OIDC (it waits for Keycloak to answer).
nessie.server.authentication.enabled=true
quarkus.oidc.auth-server-url=$issuer
quarkus.oidc.client-id=nessie
quarkus.oidc.connection-delay=PT${TIMEOUT}S
# Authorization: the rules of the README's "Security model".
nessie.server.authorization.enabled=true
EOF
    sed -n 's/^    nessie\.server\.authorization\.rules\./nessie.server.authorization.rules./p' \
      "$HERE/../README.md"
  } >"$dir/config/application.properties"
  launch nessie "$dir" "$NESSIE_JAVA_HOME/bin/java" -Xms64m -Xmx512m -XX:+UseSerialGC $JIT_QUICK \
    -XX:+ExitOnOutOfMemoryError -jar "$NESSIE_JAR"
}

cmd_start() {
  : "${S3_ENDPOINT:?name the S3 endpoint Nessie writes to}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
  S3_REGION="${S3_REGION:-us-east-1}"
  if alive keycloak || alive nessie; then die "already running in $RUN (services/auth.sh stop first)"; fi
  cmd_fetch
  mkdir -p "$RUN"
  rm -rf "$RUN/nessie" "$RUN"/*.log "$RUN"/*.pid "$RUN/auth.env"
  declare -gA SECRETS=() LAUNCHED=()
  local client kc_port kc_mgmt nessie_port nessie_mgmt issuer
  for client in "${CLIENTS[@]}"; do SECRETS[$client]="$(secret)"; done
  kc_port="$(free_port)" kc_mgmt="$(free_port)" nessie_port="$(free_port)" nessie_mgmt="$(free_port)"
  issuer="http://127.0.0.1:$kc_port/realms/$REALM"
  STARTED="$(date +%s)"
  # Both JVMs boot side by side; Nessie's OIDC waits until Keycloak answers.
  start_keycloak "$kc_port" "$kc_mgmt"
  start_nessie "$nessie_port" "$nessie_mgmt" "$issuer"
  wait_for keycloak "$issuer/.well-known/openid-configuration"
  wait_for nessie "http://127.0.0.1:$nessie_mgmt/q/health/ready"
  {
    echo "# written by services/auth.sh start"
    echo "NESSIE_URI=http://127.0.0.1:$nessie_port"
    echo "KEYCLOAK_URI=http://127.0.0.1:$kc_port"
    echo "NESSIE_OAUTH2_TOKEN_URL=$issuer/protocol/openid-connect/token"
    for client in "${CLIENTS[@]}"; do
      echo "SECRET_${client//-/_}=${SECRETS[$client]}"
    done
    echo "AUTH_STARTUP_SECONDS=$(($(date +%s) - STARTED))"
  } >"$RUN/auth.env"
  chmod 600 "$RUN/auth.env"
  log "ready: $RUN/auth.env"
}

cmd_stop() {
  stop_one nessie
  stop_one keycloak
  rm -f "$RUN/auth.env"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  *)
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
