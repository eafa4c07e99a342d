#!/usr/bin/env bash
# A private, throw-away redis-server for tests, on 127.0.0.1 only.
#   DIR=... PORT=... test/infra/redis.sh start    start (data, pid and log in $DIR), wait for PING
#   DIR=... test/infra/redis.sh stop               stop the server recorded in $DIR/redis.pid
#   DIR=... test/infra/redis.sh status             exit 0 if that server is alive and answers PING
# env: DIR (required), PORT (start; saved for status), APPENDONLY=yes (persist with an
#      append-only file, for restart tests; default: no persistence at all)
set -euo pipefail
DIR=${DIR:?set DIR to a scratch folder for this Redis}
PIDFILE=$DIR/redis.pid

# Process checks read /proc directly: no dependency on procps, and a zombie counts as gone.
alive() { local state; state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]; }
is_ours() {  # alive, and a redis-server on the port this DIR recorded (guards against PID reuse)
  local want=redis-server; [ -f "$DIR/port" ] && want="redis-server 127.0.0.1:$(cat "$DIR/port")"
  alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$want"
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" --no-auth-warning ping 2>/dev/null)" = PONG ]; }

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE")
  if [ -n "$pid" ] && is_ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "redis.sh: redis-server $pid did not stop within 10 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    fi
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  stop) stop; exit 0 ;;
  status)
    [ -f "$PIDFILE" ] && is_ours "$(cat "$PIDFILE")" && [ -f "$DIR/port" ] && ping "$(cat "$DIR/port")"
    exit $? ;;
  start) ;;
  *) echo "usage: DIR=... PORT=... $0 start|stop|status" >&2; exit 2 ;;
esac

PORT=${PORT:?set PORT for redis-server}
command -v redis-server >/dev/null || { echo "redis.sh: redis-server not installed (scripts/ensure-system-deps.sh test)" >&2; exit 1; }
mkdir -p "$DIR"
stop   # a server left over in this DIR is ours: replace it
if port_busy "$PORT"; then echo "redis.sh: port $PORT already in use" >&2; exit 3; fi
rm -f "$DIR/redis.log"
echo "$PORT" >"$DIR/port"

redis-server --bind 127.0.0.1 --port "$PORT" --protected-mode yes \
  --daemonize yes --pidfile "$PIDFILE" --dir "$DIR" --logfile "$DIR/redis.log" \
  --save '' --appendonly "${APPENDONLY:-no}" --maxmemory-policy noeviction

for _ in $(seq 100); do
  if ping "$PORT"; then echo "Redis ready: redis://127.0.0.1:$PORT (pid $(cat "$PIDFILE" 2>/dev/null), dir $DIR)"; exit 0; fi
  sleep 0.1
done
echo "redis.sh: redis-server on port $PORT did not answer PING within 10 s; log: $DIR/redis.log" >&2
tail -n 20 "$DIR/redis.log" >&2 2>/dev/null || true
stop
exit 1
