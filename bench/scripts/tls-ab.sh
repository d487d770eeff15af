#!/usr/bin/env bash
# What TLS costs the worker, side by side: one RabbitMQ node and one
# redis-server of this script's own, each listening in plain TCP and in TLS
# (certificates made here by openssl), and axn-bench run against the plain
# pair and the TLS pair in turn, round after round, so that both modes meet
# the same servers and the same moment of this machine. Everything it starts
# is stopped and removed at the end, also on failure or Ctrl-C.
#
#   cargo build --release --workspace && bench/scripts/tls-ab.sh
#   N=30000 ROUNDS=3 bench/scripts/tls-ab.sh    (the defaults)
#
# The system's RabbitMQ and Redis are not touched (their CPU is not counted:
# AXN_BENCH_BROKER_PID and the URLs point the bench at this script's own).
set -euo pipefail
N=${N:-30000}
ROUNDS=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${BENCH:-$root/target/release/axn-bench}
[ -x "$bench" ] || { echo "no $bench: cargo build --release --workspace" >&2; exit 1; }
rmq=/usr/lib/rabbitmq/bin
node="axntlsab$$@localhost"
work=

# Spare ports below the ephemeral range, each distinct; `pick N` returns the
# first of N free consecutive ones.
taken=" "
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && [[ $taken != *" $1 "* ]]; }
pick() {
  local n=${1:-1} p i ok
  while :; do
    p=$((20000 + RANDOM % 12000)); ok=1
    for ((i = 0; i < n; i++)); do port_free $((p + i)) || { ok=0; break; }; done
    if [ "$ok" = 1 ]; then
      for ((i = 0; i < n; i++)); do taken+="$((p + i)) "; done
      picked=$p; return
    fi
  done
}

rabbit_env() {
  env HOME="$work/home" RABBITMQ_CONF_ENV_FILE="$work/rabbitmq-env.conf" \
    RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$amqp" \
    RABBITMQ_DIST_PORT="$dist" RABBITMQ_CONFIG_FILE="$work/rabbitmq" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$work/advanced.config" RABBITMQ_MNESIA_BASE="$work/mnesia" \
    RABBITMQ_LOG_BASE="$work/log" RABBITMQ_PID_FILE="$work/rabbit.pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$work/enabled_plugins" RABBITMQ_PLUGINS_EXPAND_DIR="$work/plugins" \
    RABBITMQ_CTL_DIST_PORT_MIN="$ctl" RABBITMQ_CTL_DIST_PORT_MAX="$((ctl + 9))" \
    ERL_EPMD_ADDRESS=127.0.0.1 "$@"
}

cleanup() {
  set +e
  [ -n "$work" ] || return 0
  if [ -f "$work/rabbit.pid" ]; then
    rabbit_env "$rmq/rabbitmqctl" -n "$node" -q stop "$work/rabbit.pid" >/dev/null 2>&1 \
      || kill -9 "$(cat "$work/rabbit.pid")" 2>/dev/null
  fi
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
work=$(mktemp -d /tmp/axn-tls-ab.XXXXXX)
pick; amqp=$picked; pick; amqps=$picked; pick; dist=$picked; pick 10; ctl=$picked
pick; redis=$picked; pick; rediss=$picked
echo "tls-ab: ports amqp=$amqp amqps=$amqps redis=$redis rediss=$rediss, files in $work" >&2

# A CA and a certificate for localhost / 127.0.0.1.
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=axn tls-ab CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext.cnf -out server.pem 2>/dev/null
  chmod 0644 server.key
)

# The broker: plain and TLS listeners (server authentication only, as most
# deployments; a client certificate adds to the handshake, not per message).
mkdir -p "$work/home" "$work/mnesia"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/home/.erlang.cookie"
chmod 0400 "$work/home/.erlang.cookie"
: > "$work/rabbitmq-env.conf"
echo '[].' > "$work/enabled_plugins"
cat > "$work/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$amqp
listeners.ssl.default = 127.0.0.1:$amqps
ssl_options.cacertfile = $work/ca.pem
ssl_options.certfile = $work/server.pem
ssl_options.keyfile = $work/server.key
ssl_options.verify = verify_none
log.console = false
log.file.level = warning
CONF
rabbit_env RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
  "$rmq/rabbitmq-server" -detached >/dev/null
rabbit_env "$rmq/rabbitmqctl" -n "$node" -q wait "$work/rabbit.pid" --timeout 120 >/dev/null

redis-server --port "$redis" --tls-port "$rediss" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" --daemonize yes --pidfile "$work/redis.pid" \
  --tls-cert-file "$work/server.pem" --tls-key-file "$work/server.key" \
  --tls-ca-cert-file "$work/ca.pem" --tls-auth-clients no >/dev/null
for _ in $(seq 100); do redis-cli -p "$redis" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
redis-cli -p "$redis" ping 2>/dev/null | grep -q PONG \
  || { echo "tls-ab: redis-server did not start on $redis" >&2; exit 1; }
redis-cli --tls --cacert "$work/ca.pem" -h localhost -p "$rediss" ping 2>/dev/null | grep -q PONG \
  || { echo "tls-ab: redis-server's TLS port $rediss does not answer" >&2; exit 1; }

export AXN_BENCH_BROKER_PID
AXN_BENCH_BROKER_PID=$(cat "$work/rabbit.pid")
plain=(AXN__AMQP__URL="amqp://guest:guest@127.0.0.1:$amqp/%2f" AXN__REDIS__URL="redis://127.0.0.1:$redis/0")
tls=(AXN__AMQP__URL="amqps://guest:guest@localhost:$amqps/%2f" AXN__AMQP__TLS__CA_FILE="$work/ca.pem"
     AXN__REDIS__URL="rediss://localhost:$rediss/0" AXN__REDIS__TLS__CA_FILE="$work/ca.pem")
cd "$root"
for round in $(seq "$ROUNDS"); do
  for mode in plain tls; do
    echo "=== round $round: $mode ==="
    if [ "$mode" = plain ]; then vars=("${plain[@]}"); else vars=("${tls[@]}"); fi
    env "${vars[@]}" "$bench" -n "$N" --namespace "axn-tls-ab-$mode" "$@"
  done
done
