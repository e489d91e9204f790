# What services/stack.sh and services/auth.sh share: the pinned versions, the download cache, and functions.
# Sourced by both once HERE is set; the functions use their RUN (run folder), log and die.
# shellcheck shell=bash

# shellcheck source-path=SCRIPTDIR source=versions.env
. "$HERE/versions.env"
CACHE="${CASCADE_SERVICES_CACHE:-$HOME/.cache/cascade-ci/services}"
PYTHON="${PYTHON:-python3}"
MVN_DEP="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
NESSIE_JAR="$CACHE/nessie-quarkus-$NESSIE_VERSION-runner.jar"

mvn_copy() { # artifact, file name -> $CACHE/<file name>, downloaded once
  local artifact="$1" name="$2"
  [ -s "$CACHE/$name" ] && return 0
  command -v mvn >/dev/null || die "mvn is needed to download $artifact"
  local tmp="$CACHE/.download.$$"
  mkdir -p "$tmp"
  log "downloading $artifact"
  if ! mvn -B -q "$MVN_DEP:copy" -Dartifact="$artifact" -DoutputDirectory="$tmp" -Dmdep.overWriteReleases=true \
      >"$tmp/mvn.log" 2>&1; then
    tail -n 20 "$tmp/mvn.log" >&2
    rm -rf "$tmp"
    die "could not download $artifact from Maven Central"
  fi
  mv "$tmp/$name" "$CACHE/$name"
  rm -rf "$tmp"
}

fetch_nessie() {
  mvn_copy "org.projectnessie.nessie:nessie-quarkus:$NESSIE_VERSION:jar:runner" "$(basename "$NESSIE_JAR")"
}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

alive() { # service name -> 0 if its pid file names a live process
  local pid
  [ -f "$RUN/$1.pid" ] || return 1
  pid="$(cat "$RUN/$1.pid")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

now_ms() { date +%s%3N; }

launch() { # name, workdir, command... : own session (process group) so stop can end its children too
  local name="$1" dir="$2"
  shift 2
  LAUNCHED["$name"]="$(now_ms)"
  (cd "$dir" && exec setsid "$@" >"$RUN/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN/$name.pid"
}

stop_one() { # name [signal]: the signal (default TERM) to its process group, then KILL after 30 s
  local name="$1" signal="${2:-TERM}" pid _
  [ -f "$RUN/$name.pid" ] || return 0
  pid="$(cat "$RUN/$name.pid")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "-$signal" -- "-$pid" 2>/dev/null || kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid, SIG$signal)"
  fi
  rm -f "$RUN/$name.pid"
}
