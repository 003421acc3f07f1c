#!/usr/bin/env bash
# Runs the backing services of STREAMER as plain local processes on 127.0.0.1, without Docker:
# Redis, InfluxDB 1.x (Debian packages), Kafka in KRaft mode and Elasticsearch (from Maven Central).
#
#   scripts/services.sh up       install what is missing, start what is not running, wait until all answer
#   scripts/services.sh down     stop what `up` started
#   scripts/services.sh status   one line per service
#   scripts/services.sh env      export lines for eval "$(scripts/services.sh env)"
#
# Ports, folders and overrides: scripts/README-services.md.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER_DIR=$REPO_DIR/scripts/services
# Absolute and free of symlinks (realpath -m works before the folder exists), because the
# processes of a service are recognised by their working directory / command line in it.
RUN_DIR=$(realpath -m "${STREAMER_RUN_DIR:-$REPO_DIR/.run}")
CACHE_DIR=$(realpath -m "${XDG_CACHE_HOME:-${HOME:?HOME must be set}/.cache}/streamer")

REDIS_PORT=${STREAMER_REDIS_PORT:-16379}
INFLUX_PORT=${STREAMER_INFLUX_PORT:-18086}
KAFKA_PORT=${STREAMER_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${STREAMER_KAFKA_CONTROLLER_PORT:-19093}
ES_PORT=${STREAMER_ES_PORT:-19200}
ES_TRANSPORT_PORT=${STREAMER_ES_TRANSPORT_PORT:-19300}
KAFKA_PARTITIONS=${STREAMER_KAFKA_PARTITIONS:-1}
for name in REDIS_PORT INFLUX_PORT KAFKA_PORT KAFKA_CONTROLLER_PORT ES_PORT ES_TRANSPORT_PORT \
  KAFKA_PARTITIONS; do
  [[ ${!name} =~ ^[1-9][0-9]*$ ]] || { echo "services.sh: error: STREAMER_$name='${!name}' is not a positive number" >&2; exit 2; }
done
# InfluxDB's RPC (backup/restore) port defaults to 8088, which other software often holds.
INFLUX_RPC_PORT=$((INFLUX_PORT + 1))

KAFKA_VERSION=${STREAMER_KAFKA_VERSION:-4.1.1}
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
# Kafka logs through slf4j 1.7 but its POMs bring no slf4j binding (the broker would be silent);
# log4j-slf4j-impl routes it to the log4j-core that Kafka 4.1 already uses. Declaring core and
# binding at one version makes Maven pick a consistent log4j set whatever the Kafka version.
LOG4J_VERSION=2.24.3
# Pinned so that Maven does not fall back to its ancient default (2.8) or to "latest".
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

ES_VERSION=${STREAMER_ES_VERSION:-8.19.21}
ES_HOME=$CACHE_DIR/elasticsearch-$ES_VERSION
ES_ARTIFACT=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip
# Elasticsearch refuses to run as root.
ES_USER=streamer-es

SERVICES=(redis influxdb kafka elasticsearch)
declare -A ADDRESS=(
  [redis]=127.0.0.1:$REDIS_PORT [influxdb]=127.0.0.1:$INFLUX_PORT
  [kafka]=127.0.0.1:$KAFKA_PORT [elasticsearch]=127.0.0.1:$ES_PORT)
declare -A PORTS=(
  [redis]="$REDIS_PORT" [influxdb]="$INFLUX_PORT $INFLUX_RPC_PORT"
  [kafka]="$KAFKA_PORT $KAFKA_CONTROLLER_PORT" [elasticsearch]="$ES_PORT $ES_TRANSPORT_PORT")
# Seconds from launch until the service must answer.
declare -A TIMEOUT=([redis]=20 [influxdb]=30 [kafka]=90 [elasticsearch]=120)
STOP_TIMEOUT=20

# Kafka's own command-line tools (same classpath as the broker): quick-starting small JVM,
# warnings only, on stderr.
KAFKA_TOOL=(java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
  "-Dlog4j2.configurationFile=$HELPER_DIR/kafka-tools-log4j2.properties"
  -cp "$KAFKA_HOME/lib/*")

die() { echo "services.sh: error: $*" >&2; exit 1; }
note() { echo "services.sh: $*" >&2; }
now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
elapsed() { local us=$(($(now_us) - $1)); printf '%d.%ds' $((us / 1000000)) $((us % 1000000 / 100000)); }
pid_file() { echo "$RUN_DIR/$1/$1.pid"; }
log_file() { echo "$RUN_DIR/$1/$1.log"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Serialises up/down of one run folder. Started services must not inherit fd 9 (see launch).
lock_run_dir() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.services.lock"
  flock -w 300 9 || die "another services.sh holds $RUN_DIR/.services.lock"
}

# Downloads under a lock of the cache folder, which all run folders of this user share.
fetch_artifacts() {
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.fetch.lock"
  flock -w 900 8 || die "another services.sh holds $CACHE_DIR/.fetch.lock"
  fetch_kafka
  fetch_elasticsearch
  exec 8>&-
}

# ---------------------------------------------------------------------------------------------
# Installation

# Installs the Debian packages that provide the given commands, when any is missing: apt-get
# update runs once, and only then, because CI starts from a clean machine.
ensure_commands() {
  local -A package_of=([curl]=curl [unzip]=unzip [java]=openjdk-17-jre-headless [mvn]=maven
    [redis-server]=redis-server [redis-cli]=redis-tools [influxd]=influxdb [pgrep]=procps
    [flock]=util-linux [setpriv]=util-linux [useradd]=passwd)
  local cmd missing=()
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || missing+=("${package_of[$cmd]}")
  done
  ((${#missing[@]})) || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  note "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed (needed to install: ${missing[*]})"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || die "cannot install Debian packages: ${missing[*]}"
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || die "command '$cmd' still missing after installing ${package_of[$cmd]}"
  done
}

# Kafka 4.x and Elasticsearch 8.x need Java 17 or newer.
check_java() {
  local version
  version=$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')
  if ! [[ $version =~ ^[0-9]+$ ]] || ((version < 17)); then
    die "Java 17 or newer is needed, but $(command -v java) is version '${version:-unknown}'"
  fi
}

# Resolves the broker, its tools and a logging backend with Maven, once per Kafka version:
# when lib/ exists, Maven is not called at all.
fetch_kafka() {
  [[ -d $KAFKA_HOME/lib ]] && return 0
  note "resolving Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME/lib"
  mkdir -p "$KAFKA_HOME"
  # kafka-tools (TopicCommand, console producer/consumer) is not a dependency of kafka_2.13;
  # its connect-runtime dependency (Jetty, Jersey) only serves Connect tools we do not use.
  cat >"$KAFKA_HOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.streamer</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  rm -rf "$KAFKA_HOME/lib.partial"
  if ! mvn -B -f "$KAFKA_HOME/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" -DincludeScope=runtime \
    -DoutputDirectory="$KAFKA_HOME/lib.partial" >"$KAFKA_HOME/mvn.log" 2>&1; then
    grep -m 1 -F '[ERROR]' "$KAFKA_HOME/mvn.log" >&2
    die "cannot resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (+ kafka-tools, log4j $LOG4J_VERSION) from Maven Central; Maven log: $KAFKA_HOME/mvn.log"
  fi
  # Renamed only when complete, so an interrupted download is redone, never half used.
  mv "$KAFKA_HOME/lib.partial" "$KAFKA_HOME/lib"
}

# Fetches and unzips the Elasticsearch integ-test distribution (no bundled JDK) once per version.
fetch_elasticsearch() {
  [[ -x $ES_HOME/bin/elasticsearch ]] && return 0
  note "resolving $ES_ARTIFACT from Maven Central into $ES_HOME"
  local partial=$ES_HOME.partial
  rm -rf "$partial"
  mkdir -p "$partial"
  if ! (cd "$partial" && mvn -B "$DEPENDENCY_PLUGIN:copy" -Dartifact="$ES_ARTIFACT" \
    -DoutputDirectory="$partial" >"$partial/mvn.log" 2>&1); then
    grep -m 1 -F '[ERROR]' "$partial/mvn.log" >&2
    die "cannot resolve $ES_ARTIFACT from Maven Central; Maven log: $partial/mvn.log"
  fi
  unzip -q "$partial/elasticsearch-$ES_VERSION.zip" -d "$partial" \
    || die "cannot unzip $partial/elasticsearch-$ES_VERSION.zip"
  # The distribution is read by $ES_USER, whatever the umask of whoever unzipped it.
  chmod -R a+rX "$partial/elasticsearch-$ES_VERSION"
  mv "$partial/elasticsearch-$ES_VERSION" "$ES_HOME"
  rm -rf "$partial"
}

ensure_es_user() {
  id -u "$ES_USER" >/dev/null 2>&1 && return 0
  note "creating system user $ES_USER (Elasticsearch refuses to run as root)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$ES_USER" || die "cannot create system user $ES_USER"
}

as_es_user() { setpriv --reuid="$ES_USER" --regid="$ES_USER" --clear-groups -- "$@"; }

# $ES_USER must reach paths under root's home (mode 700) or a checkout it cannot enter: adds
# "search" permission (o+x: enter, not list) to each ancestor folder it cannot cross.
grant_es_traverse() {
  local dir="" part parts
  IFS=/ read -ra parts <<<"${1#/}"
  for part in "${parts[@]}"; do
    dir+=/$part
    as_es_user test -x "$dir" && continue
    note "chmod o+x $dir (so that $ES_USER can reach $1)"
    chmod o+x "$dir"
  done
}

# ---------------------------------------------------------------------------------------------
# Processes

# True when process $1 belongs to service $2. A pid file can outlive its process and the pid be
# reused, so a process counts only if its working directory or its command line points into the
# service's run folder (Redis rewrites its command line; the ES launcher changes to ES_HOME).
owned_by() {
  local pid=$1 dir=$RUN_DIR/$2 cwd cmdline
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
  [[ $cwd == "$dir" || $cwd == "$dir"/* ]] && return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$dir/"* ]]
}

# Pids of the running processes of a service: the members of the session whose leader's pid is
# in the pid file (launch starts each service with setsid, so JVMs forked by a launcher and
# processes whose parent died are still found), that pass owned_by.
service_pids() {
  local svc=$1 sid pid
  sid=$(cat "$(pid_file "$svc")" 2>/dev/null) || return 0
  [[ $sid =~ ^[1-9][0-9]*$ ]] || return 0
  for pid in $(pgrep -s "$sid"); do
    if owned_by "$pid" "$svc"; then echo "$pid"; fi
  done
}

is_running() { [[ -n $(service_pids "$1") ]]; }

# Starts "$@" in the background in the service's run folder as the leader of a new session,
# stdout+stderr appended to the service's log, and writes its pid file. The subshell is not a
# process group leader, so setsid does not fork and $! is the pid of the service itself.
launch() {
  local svc=$1
  shift
  (cd "$RUN_DIR/$svc" && exec setsid "$@" </dev/null >>"$(log_file "$svc")" 2>&1 9>&-) &
  echo "$!" >"$(pid_file "$svc")"
}

# ---------------------------------------------------------------------------------------------
# Services: start_<svc> writes the configuration and launches; <svc>_ready is the readiness probe.

start_redis() {
  local dir=$RUN_DIR/redis
  cat >"$dir/redis.conf" <<EOF
# Written by scripts/services.sh at each start.
bind 127.0.0.1
port $REDIS_PORT
dir "$dir"
daemonize no
logfile ""
EOF
  launch redis redis-server "$dir/redis.conf"
}

redis_ready() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

start_influxdb() {
  local dir=$RUN_DIR/influxdb
  # Keys valid for InfluxDB 1.6. The monitor store is off: it would write an _internal
  # database every 10 s for nothing.
  cat >"$dir/influxdb.conf" <<EOF
# Written by scripts/services.sh at each start.
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"

[meta]
  dir = "$dir/meta"

[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$INFLUX_PORT"
  auth-enabled = false
EOF
  launch influxdb influxd -config "$dir/influxdb.conf"
}

influxdb_ready() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$INFLUX_PORT/ping"; }

start_kafka() {
  local dir=$RUN_DIR/kafka uuid
  # Single combined broker+controller. One partition for the internal topics too: creating 50
  # offsets partitions makes the first consumer-group join slow on a 2-core machine.
  cat >"$dir/server.properties" <<EOF
# Written by scripts/services.sh at each start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=$KAFKA_PARTITIONS
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
EOF
  # Bounded admin calls for the readiness probe (the default waits a minute).
  cat >"$dir/admin.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
  # KRaft storage is formatted once, on the first start of this run folder.
  if [[ ! -f $dir/data/meta.properties ]]; then
    uuid=$("${KAFKA_TOOL[@]}" kafka.tools.StorageTool random-uuid 2>>"$(log_file kafka)") \
      || die "kafka.tools.StorageTool random-uuid failed; log: $(log_file kafka)"
    "${KAFKA_TOOL[@]}" kafka.tools.StorageTool format -t "$uuid" -c "$dir/server.properties" \
      >>"$(log_file kafka)" 2>&1 || die "formatting Kafka storage failed; log: $(log_file kafka)"
  fi
  launch kafka java -Xms256m -Xmx512m \
    "-Dlog4j2.configurationFile=$HELPER_DIR/kafka-log4j2.properties" \
    -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$dir/server.properties"
}

# An open port is not enough: a metadata round-trip through the admin client proves the broker
# has joined its own KRaft quorum and serves requests.
kafka_ready() {
  port_open "$KAFKA_PORT" && timeout 30 "${KAFKA_TOOL[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" --command-config "$RUN_DIR/kafka/admin.properties" \
    --list >/dev/null 2>&1
}

start_elasticsearch() {
  local dir=$RUN_DIR/elasticsearch java_home
  java_home=${STREAMER_ES_JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")}
  [[ -x $java_home/bin/java ]] || die "no Java for Elasticsearch at $java_home (set STREAMER_ES_JAVA_HOME)"
  ensure_es_user
  # A private copy of the distribution's config folder: ES writes its keystore there.
  [[ -d $dir/config ]] || cp -r "$ES_HOME/config" "$dir/config"
  # Only settings of modules present in the integ-test zip (unknown settings abort startup).
  # The disk watermarks are off so that a full CI disk does not turn indices read-only.
  cat >"$dir/config/elasticsearch.yml" <<EOF
# Written by scripts/services.sh at each start.
cluster.name: streamer-local
node.name: local
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
path.data: $dir/data
path.logs: $dir/logs
xpack.security.enabled: false
action.destructive_requires_name: false
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  mkdir -p "$dir/data" "$dir/logs" "$dir/tmp"
  chown -R "$ES_USER:$ES_USER" "$dir"
  grant_es_traverse "$ES_HOME"
  grant_es_traverse "$dir"
  # setpriv rather than runuser: runuser stays as a root parent that SIGKILLs its child 2 s
  # after a SIGTERM, which would cut Elasticsearch's graceful shutdown short. env -i keeps
  # root's environment (JAVA_HOME, JAVA_TOOL_OPTIONS...) out of the node.
  launch elasticsearch setpriv --reuid="$ES_USER" --regid="$ES_USER" --clear-groups -- \
    env -i PATH=/usr/bin:/bin HOME="$dir" ES_JAVA_HOME="$java_home" ES_PATH_CONF="$dir/config" \
    ES_TMPDIR="$dir/tmp" ES_JAVA_OPTS="-Xms512m -Xmx512m" "$ES_HOME/bin/elasticsearch"
}

elasticsearch_ready() {
  curl -sf -o /dev/null --max-time 5 \
    "http://127.0.0.1:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=1s"
}

# ---------------------------------------------------------------------------------------------
# Subcommands

fail_service() {
  local svc=$1 why=$2 log
  log=$(log_file "$svc")
  {
    echo "services.sh: error: $svc (${ADDRESS[$svc]}) $why; log: $log"
    echo "----- last 30 lines of $log -----"
    tail -n 30 "$log"
  } >&2
  exit 1
}

wait_ready() {
  local svc=$1 deadline=$2
  until "${svc}_ready"; do
    is_running "$svc" || fail_service "$svc" "exited before answering"
    (($(now_us) < deadline)) || fail_service "$svc" "did not answer within ${TIMEOUT[$svc]}s"
    sleep 0.5
  done
}

cmd_up() {
  local start svc port pid i
  local -A state launched
  start=$(now_us)
  ensure_commands curl unzip java mvn redis-server redis-cli influxd pgrep flock setpriv useradd
  check_java
  fetch_artifacts
  lock_run_dir
  for svc in "${SERVICES[@]}"; do
    if is_running "$svc"; then state[$svc]="already running"; continue; fi
    # Refuse ports held by something else: its answers would pass for ours.
    for port in ${PORTS[$svc]}; do
      ! port_open "$port" || die "port $port needed by $svc is already in use by a process this script did not start"
    done
  done
  # Launch everything first, then wait: the services start in parallel. Slowest first
  # (Elasticsearch, then Kafka, whose first start formats its storage before launching).
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    svc=${SERVICES[i]}
    if [[ -z ${state[$svc]:-} ]]; then
      mkdir -p "$RUN_DIR/$svc"
      : >"$(log_file "$svc")"
      launched[$svc]=$(now_us)
      "start_$svc"
      state[$svc]=started
    fi
  done
  for svc in "${SERVICES[@]}"; do
    wait_ready "$svc" $((${launched[$svc]:-$(now_us)} + TIMEOUT[$svc] * 1000000))
    pid=$(cat "$(pid_file "$svc")")
    if [[ ${state[$svc]} == started ]]; then
      state[$svc]="started (answered after $(elapsed "${launched[$svc]}"))"
    fi
    printf '%-14s %-22s pid %-8s %s\n' "$svc" "${ADDRESS[$svc]}" "$pid" "${state[$svc]}"
  done
  echo "all services up in $(elapsed "$start")"
}

cmd_down() {
  local svc pid deadline left
  local -A pids
  ensure_commands pgrep flock
  lock_run_dir
  for svc in "${SERVICES[@]}"; do
    pids[$svc]=$(service_pids "$svc")
    # shellcheck disable=SC2086 # one pid per word
    [[ -z ${pids[$svc]} ]] || kill -TERM ${pids[$svc]} 2>/dev/null || true
  done
  deadline=$(($(now_us) + STOP_TIMEOUT * 1000000))
  for svc in "${SERVICES[@]}"; do
    while is_running "$svc" && (($(now_us) < deadline)); do sleep 0.2; done
    left=$(service_pids "$svc")
    if [[ -n $left ]]; then
      note "$svc did not stop within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
      # shellcheck disable=SC2086 # one pid per word
      kill -KILL $left 2>/dev/null || true
      while is_running "$svc"; do sleep 0.1; done
    fi
    pid=$(cat "$(pid_file "$svc")" 2>/dev/null || true)
    rm -f "$(pid_file "$svc")"
    if [[ -n ${pids[$svc]} ]]; then
      printf '%-14s stopped (pid %s)\n' "$svc" "$pid"
    else
      printf '%-14s was not running\n' "$svc"
    fi
  done
}

cmd_status() {
  local svc
  ensure_commands pgrep
  for svc in "${SERVICES[@]}"; do
    if is_running "$svc"; then
      printf '%-14s running  %-22s pid %s\n' "$svc" "${ADDRESS[$svc]}" "$(cat "$(pid_file "$svc")")"
    else
      printf '%-14s stopped  %-22s\n' "$svc" "${ADDRESS[$svc]}"
    fi
  done
}

cmd_env() {
  echo "export STREAMER_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
  echo "export STREAMER_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
  echo "export STREAMER_INFLUX_URL=http://127.0.0.1:$INFLUX_PORT"
  echo "export STREAMER_ES_URL=http://127.0.0.1:$ES_PORT"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *)
    echo "usage: $0 up|down|status|env" >&2
    exit 2
    ;;
esac
