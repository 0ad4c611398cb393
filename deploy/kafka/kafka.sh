#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker+controller in one JVM, loopback only) for
# development, the integration tests and the demo. The jars come from Maven Central via
# deploy/kafka/pom.xml and are cached in deploy/kafka/lib (git-ignored).
#
# Usage: deploy/kafka/kafka.sh COMMAND [ARGS...]
#   fetch                 copy the Kafka jars into lib/ (only when missing, incomplete or the
#                         pom changed; marker lib/.complete), later runs need no network
#   start                 fetch if needed, format storage once, start the broker in the
#                         background and wait until it serves clients (idempotent)
#   stop                  SIGTERM, wait up to 30 s, then SIGKILL (exit 0 when not running)
#   status                exit 0 and print "running on 127.0.0.1:PORT" when serving, else 1
#   reset                 stop and delete the data dir
#   tool CLASS|ALIAS ...  run a Kafka tool class from the same classpath, e.g.
#                         kafka.sh tool topics --bootstrap-server 127.0.0.1:19092 --list
#
# Environment:
#   DECAY_KAFKA_DIR              data dir (default $REPO/var/kafka): server.properties,
#                                cluster.id, kraft/ (log.dirs), logs/server.log, kafka.pid
#   DECAY_KAFKA_PORT             PLAINTEXT client port (default 19092); the readiness check
#                                speaks plain Kafka protocol to it, so keep it PLAINTEXT
#   DECAY_KAFKA_CONTROLLER_PORT  KRaft controller port (default 19093); fixed at format time
#   DECAY_KAFKA_EXTRA_PROPS      extra lines appended to server.properties (later keys win,
#                                e.g. to add a SASL listener next to the PLAINTEXT one)
#   DECAY_KAFKA_FORMAT_ARGS      extra args for the storage format (e.g. --add-scram ...)
#   DECAY_KAFKA_HEAP_OPTS        broker heap (default "-Xms512m -Xmx512m")
#   DECAY_KAFKA_TOOL_HEAP_OPTS   tool heap (default "-Xmx512m")
#   DECAY_KAFKA_START_TIMEOUT    seconds to wait for the broker (default 60)
#   DECAY_KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM (default 30)
#   JAVA_HOME                    Java 17+ to use (default: java on PATH)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LIB="$HERE/lib"
POM="$HERE/pom.xml"
DATA="${DECAY_KAFKA_DIR:-$REPO/var/kafka}"
PORT="${DECAY_KAFKA_PORT:-19092}"
CPORT="${DECAY_KAFKA_CONTROLLER_PORT:-19093}"
HOST=127.0.0.1
PROPS="$DATA/server.properties"
PIDFILE="$DATA/kafka.pid"
LOGDIR="$DATA/logs"
KRAFT="$DATA/kraft"
START_TIMEOUT="${DECAY_KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${DECAY_KAFKA_STOP_TIMEOUT:-30}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*"; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- jars

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

lib_complete() {
    [[ -f "$LIB/.complete" ]] && [[ "$(cat "$LIB/.complete")" == "$(pom_hash)" ]]
}

cmd_fetch() {
    lib_complete && return 0
    command -v mvn >/dev/null || die "mvn not found (needed once to fetch the Kafka jars)"
    # Serialise concurrent fetches; the pom itself is the lock file.
    exec 8<"$POM"
    flock 8
    if ! lib_complete; then
        local tmp="$HERE/target/lib.$$"
        rm -rf "$tmp"
        mkdir -p "$HERE/target"
        say "fetching Kafka jars with Maven into $LIB"
        local out
        if ! out="$(cd "$HERE" && mvn -q -B -Dstyle.color=never -f pom.xml \
                dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime 2>&1)"
        then
            echo "$out" >&2
            rm -rf "$tmp"
            die "maven fetch failed"
        fi
        pom_hash >"$tmp/.complete"
        rm -rf "$LIB"
        mv "$tmp" "$LIB"
        rmdir "$HERE/target" 2>/dev/null || true
    fi
    exec 8<&-
}

need_java() {
    command -v "$JAVA" >/dev/null || die "java not found (need Java 17+; set JAVA_HOME)"
}

# ---------------------------------------------------------------- process helpers

# Prints our broker pid (pid file present, process alive, not a zombie, and really the
# kafka.Kafka JVM on this data dir); returns 1 otherwise.
broker_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid cmdline
    pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *kafka.Kafka*"$PROPS"* ]] || return 1
    echo "$pid"
}

alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    # A killed process whose parent never reaps it stays a zombie: that counts as gone.
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ "$state" != Z ]]
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

pick_python() {
    if command -v python3 >/dev/null; then echo python3
    elif [[ -x "$REPO/.venv/bin/python" ]]; then echo "$REPO/.venv/bin/python"
    else die "python3 not found (used for the readiness check)"
    fi
}

# probe PORT WAIT_SECONDS [PID]: a real "serves clients" check. Speaks the Kafka protocol:
# ApiVersions v0, then Metadata v1, and succeeds only when the metadata lists a broker on
# PORT. The broker only accepts client connections once it is registered and unfenced, so
# this passes exactly when clients can use it. WAIT_SECONDS=0 probes once; otherwise it polls
# every 0.5 s and gives up early when PID dies.
probe() {
    "$(pick_python)" - "$@" <<'PY'
import os
import socket
import struct
import sys
import time

port = int(sys.argv[1])
wait = float(sys.argv[2])
pid = int(sys.argv[3]) if len(sys.argv) > 3 else 0


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def call(sock, api_key, version, corr, body):
    client = b"decay-kafka-sh"
    payload = struct.pack(">hhih", api_key, version, corr, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    data = recv_exact(sock, size)
    if struct.unpack_from(">i", data)[0] != corr:
        raise OSError("correlation id mismatch")
    return data[4:]


def serving():
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.settimeout(2.0)
        if struct.unpack_from(">h", call(sock, 18, 0, 1, b""))[0] != 0:
            return False
        resp = call(sock, 3, 1, 2, struct.pack(">i", 0))  # Metadata v1, no topics
        (n,) = struct.unpack_from(">i", resp)
        off = 4
        for _ in range(n):
            _node, hlen = struct.unpack_from(">ih", resp, off)
            off += 6 + hlen
            bport, rlen = struct.unpack_from(">ih", resp, off)
            off += 6 + max(rlen, 0)
            if bport == port:
                return True
        return False


def alive(p):
    try:
        os.kill(p, 0)
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


deadline = time.monotonic() + wait
while True:
    try:
        if serving():
            sys.exit(0)
    except (OSError, struct.error):
        pass
    if time.monotonic() >= deadline:
        sys.exit(1)
    if pid and not alive(pid):
        sys.exit(2)
    time.sleep(0.5)
PY
}

log_tail() {
    local f
    for f in "$LOGDIR/server.log" "$LOGDIR/kafka.out"; do
        if [[ -s "$f" ]]; then
            echo "---- last 40 lines of $f" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

lock_data() {
    mkdir -p "$DATA"
    exec 9>"$DATA/.lock"
    flock -w 120 9 || die "timed out waiting for the lock on $DATA"
}

# ---------------------------------------------------------------- start

new_cluster_id() {
    # Same form as Kafka's Uuid.randomUuid(): 16 random bytes, url-safe base64, no padding,
    # never starting with '-'.
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && break
    done
    echo "$id"
}

write_props() {
    cat >"$PROPS.tmp" <<EOF
# Generated by deploy/kafka/kafka.sh on every start: edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$KRAFT

# Topics are created explicitly (the app and tests own their topology).
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Single node: internal topics with one replica, and fewer partitions so that the first
# consumer group / transaction does not have to create 50 partitions.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Small segments and indexes, a small cleaner buffer: fine for dev and tests.
log.segment.bytes=16777216
log.index.size.max.bytes=1048576
log.retention.hours=24
log.retention.check.interval.ms=60000
log.cleaner.dedupe.buffer.size=16777216
num.network.threads=2
num.io.threads=4
EOF
    if [[ -n "${DECAY_KAFKA_EXTRA_PROPS:-}" ]]; then
        printf '\n# DECAY_KAFKA_EXTRA_PROPS\n%s\n' "$DECAY_KAFKA_EXTRA_PROPS" >>"$PROPS.tmp"
    fi
    mv "$PROPS.tmp" "$PROPS"
}

# The standalone quorum records the controller endpoint at format time.
check_controller_port() {
    [[ -f "$KRAFT/meta.properties" ]] || return 0
    local formatted
    formatted="$(cat "$DATA/controller.port" 2>/dev/null || echo "$CPORT")"
    [[ "$formatted" == "$CPORT" ]] || die "$DATA was formatted for controller port" \
        "$formatted, not $CPORT: use that port or run 'kafka.sh reset'"
}

format_once() {
    [[ -f "$KRAFT/meta.properties" ]] && return 0
    [[ -s "$DATA/cluster.id" ]] || new_cluster_id >"$DATA/cluster.id"
    say "formatting $KRAFT (cluster id $(cat "$DATA/cluster.id"))"
    local -a extra=()
    # Split on whitespace only: no globbing ('SCRAM-SHA-512=[name=...]' is a bracket glob).
    [[ -n "${DECAY_KAFKA_FORMAT_ARGS:-}" ]] && read -r -a extra <<<"$DECAY_KAFKA_FORMAT_ARGS"
    "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$HERE/tools-log4j2.yaml" -cp "$LIB/*" \
        kafka.tools.StorageTool format --config "$PROPS" \
        --cluster-id "$(cat "$DATA/cluster.id")" --standalone "${extra[@]}" >/dev/null \
        || die "storage format failed"
    echo "$CPORT" >"$DATA/controller.port"
}

cmd_start() {
    cmd_fetch
    need_java
    lock_data
    local pid rc
    if pid="$(broker_pid)"; then
        if probe "$PORT" 0; then
            say "already running on $HOST:$PORT (pid $pid)"
            return 0
        fi
        say "pid $pid is up but not serving yet; waiting"
    else
        rm -f "$PIDFILE"
        local p
        for p in "$PORT" "$CPORT"; do
            port_open "$p" && die "port $HOST:$p is already in use by another process" \
                "(another broker? set DECAY_KAFKA_PORT / DECAY_KAFKA_CONTROLLER_PORT)"
        done
        check_controller_port
        mkdir -p "$LOGDIR"
        write_props
        format_once
        local -a heap jvm
        # shellcheck disable=SC2206  # word splitting intended for JVM options
        heap=(${DECAY_KAFKA_HEAP_OPTS:--Xms512m -Xmx512m})
        jvm=(-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
             -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
             -Dlog4j2.configurationFile="$HERE/log4j2.yaml" -Dkafka.logs.dir="$LOGDIR")
        # The child writes its own pid before exec'ing the JVM, so the pid file is right
        # whether or not setsid had to fork. fd 9 (the data-dir lock) is not inherited.
        # shellcheck disable=SC2016  # $$ and $@ are for the child shell
        setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
            "$JAVA" "${heap[@]}" "${jvm[@]}" -cp "$LIB/*" kafka.Kafka "$PROPS" \
            >"$LOGDIR/kafka.out" 2>&1 </dev/null 9>&- &
        local i
        for i in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
        pid="$(cat "$PIDFILE" 2>/dev/null || true)"
        [[ -n "$pid" ]] || die "broker did not start (no pid file)"
        say "started pid $pid, waiting for $HOST:$PORT (up to ${START_TIMEOUT}s)"
    fi
    rc=0
    probe "$PORT" "$START_TIMEOUT" "$pid" || rc=$?
    if [[ $rc -eq 0 ]]; then
        say "running on $HOST:$PORT (pid $pid, data $DATA)"
        return 0
    fi
    if [[ $rc -eq 2 ]]; then
        echo "kafka.sh: broker (pid $pid) exited during startup" >&2
    else
        echo "kafka.sh: broker not serving on $HOST:$PORT after ${START_TIMEOUT}s; stopping it" >&2
        stop_pid "$pid" >/dev/null
    fi
    rm -f "$PIDFILE"
    log_tail
    exit 1
}

# ---------------------------------------------------------------- stop / status / reset

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        alive "$pid" || { say "stopped (pid $pid)"; return 0; }
        sleep 0.2
    done
    say "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || { say "killed (pid $pid)"; return 0; }
        sleep 0.1
    done
    die "could not kill pid $pid"
}

cmd_stop() {
    [[ -d "$DATA" ]] || { say "not running"; return 0; }
    lock_data
    local pid
    if pid="$(broker_pid)"; then
        stop_pid "$pid"
    else
        say "not running"
    fi
    rm -f "$PIDFILE"
}

cmd_status() {
    if probe "$PORT" 0; then
        local pid
        if pid="$(broker_pid)"; then
            echo "running on $HOST:$PORT (pid $pid, data $DATA)"
        else
            echo "running on $HOST:$PORT (not started from $DATA)"
        fi
        return 0
    fi
    echo "not running on $HOST:$PORT"
    return 1
}

cmd_reset() {
    cmd_stop
    [[ -d "$DATA" ]] || return 0
    # Refuse to delete anything that does not look like a data dir made by this script.
    if [[ -n "$(ls -A "$DATA")" && ! -f "$PROPS" && ! -d "$KRAFT" ]]; then
        die "$DATA does not look like a kafka.sh data dir; not deleting it"
    fi
    case "$(cd "$DATA" && pwd -P)" in
        / | "$(cd "$REPO" && pwd -P)" | "$(cd ~ && pwd -P)") die "refusing to delete $DATA" ;;
    esac
    rm -rf "$DATA"
    say "deleted $DATA"
}

# ---------------------------------------------------------------- tools

tool_class() {
    case "$1" in
        topics) echo org.apache.kafka.tools.TopicCommand ;;
        console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
        console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
        producer-perf-test) echo org.apache.kafka.tools.ProducerPerformance ;;
        consumer-perf-test) echo org.apache.kafka.tools.ConsumerPerformance ;;
        consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
        configs) echo kafka.admin.ConfigCommand ;;
        get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
        delete-records) echo org.apache.kafka.tools.DeleteRecordsCommand ;;
        metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
        broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
        transactions) echo org.apache.kafka.tools.TransactionsCommand ;;
        acls) echo org.apache.kafka.tools.AclCommand ;;
        dump-log) echo org.apache.kafka.tools.DumpLogSegments ;;
        storage) echo kafka.tools.StorageTool ;;
        *) echo "$1" ;;
    esac
}

cmd_tool() {
    [[ $# -ge 1 ]] || die "usage: kafka.sh tool CLASS|ALIAS [ARGS...]"
    cmd_fetch
    need_java
    local cls
    cls="$(tool_class "$1")"
    shift
    local -a jvm
    # shellcheck disable=SC2206  # word splitting intended for JVM options
    jvm=(${DECAY_KAFKA_TOOL_HEAP_OPTS:--Xmx512m})
    # Short-lived admin tools start faster with the C1 JIT only; the perf tools keep C2.
    case "$cls" in
        *Performance | *EndToEndLatency | *Verifiable*) ;;
        *) jvm+=(-XX:TieredStopAtLevel=1) ;;
    esac
    exec "$JAVA" "${jvm[@]}" -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/tools-log4j2.yaml" -cp "$LIB/*" "$cls" "$@"
}

# ---------------------------------------------------------------- main

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    tool) cmd_tool "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
