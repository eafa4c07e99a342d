#!/usr/bin/env bash
# A private, throw-away clamd for tests: a custom signature database of our own (no internet, no
# freshclam), unix socket + TCP on 127.0.0.1 only.
#   DIR=... PORT=... test/infra/clamd.sh start    write $DIR/clamd.conf + db, start clamd, wait for PING
#   DIR=... test/infra/clamd.sh stop               stop the clamd recorded in $DIR/clamd.pid
#   DIR=... test/infra/clamd.sh status             exit 0 if that clamd is alive and answers PING
# env: DIR (required), PORT (start), STREAM_MAX (StreamMaxLength, default 100M)
# The socket is $DIR/clamd.sock. The database detects the EICAR test string (.ndb body signature
# and .hdb hash of the 68-byte file): matches are reported as Tusk.Test.EICAR*.UNOFFICIAL.
# Run as root (clamd then keeps root; no User directive) or as any user owning $DIR.
set -euo pipefail
DIR=${DIR:?set DIR to a scratch folder for this clamd}
PIDFILE=$DIR/clamd.pid
SOCK=$DIR/clamd.sock

alive() { local state; state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]; }
is_ours() { alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$DIR/clamd.conf"; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ping() {  # PING over TCP with bash only (no socat/nc needed)
  local reply
  reply=$(exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$1" && printf 'zPING\0' >&3 && timeout 2 head -c 4 <&3) || return 1
  [ "$reply" = PONG ]
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE")
  if [ -n "$pid" ] && is_ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$PIDFILE" "$SOCK"
}

case "${1:-}" in
  stop) stop; exit 0 ;;
  status)
    [ -f "$PIDFILE" ] && is_ours "$(cat "$PIDFILE")" && [ -f "$DIR/port" ] && ping "$(cat "$DIR/port")"
    exit $? ;;
  start) ;;
  *) echo "usage: DIR=... PORT=... $0 start|stop|status" >&2; exit 2 ;;
esac

PORT=${PORT:?set PORT for clamd}
CLAMD=$(command -v clamd || echo /usr/sbin/clamd)
[ -x "$CLAMD" ] || { echo "clamd.sh: clamd not installed (scripts/ensure-system-deps.sh test)" >&2; exit 1; }
mkdir -p "$DIR/db" "$DIR/tmp"
stop
if port_busy "$PORT"; then echo "clamd.sh: port $PORT already in use" >&2; exit 3; fi
echo "$PORT" >"$DIR/port"
rm -f "$DIR/clamd.log"

# The EICAR test string, assembled so that this script itself is not flagged by a real scanner.
eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
# .ndb body signature: Name:TargetType(0=any):Offset(*=anywhere):HexSignature
printf 'Tusk.Test.EICAR:0:*:%s\n' "$(printf '%s' 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE' | od -An -tx1 | tr -d ' \n')" >"$DIR/db/tusk-test.ndb"
# .hdb hash signature: md5:size:Name
printf '%s:%s:Tusk.Test.EICAR.File\n' "$(printf '%s' "$eicar" | md5sum | cut -d' ' -f1)" "${#eicar}" >"$DIR/db/tusk-test.hdb"

cat >"$DIR/clamd.conf" <<CONF
DatabaseDirectory $DIR/db
LocalSocket $SOCK
FixStaleSocket yes
TCPSocket $PORT
TCPAddr 127.0.0.1
Foreground yes
StreamMaxLength ${STREAM_MAX:-100M}
LogFile $DIR/clamd.log
PidFile $PIDFILE
TemporaryDirectory $DIR/tmp
MaxThreads 4
CONF

# Foreground: we background it ourselves (setsid: not in the caller's process group).
setsid "$CLAMD" --config-file="$DIR/clamd.conf" >>"$DIR/clamd.out" 2>&1 </dev/null &
echo $! >"$PIDFILE"

for _ in $(seq 150); do
  if ping "$PORT"; then echo "clamd ready: 127.0.0.1:$PORT, $SOCK (pid $(cat "$PIDFILE"), dir $DIR)"; exit 0; fi
  alive "$(cat "$PIDFILE")" || break
  sleep 0.1
done
echo "clamd.sh: clamd did not answer PING on port $PORT; log:" >&2
tail -n 30 "$DIR/clamd.log" "$DIR/clamd.out" >&2 2>/dev/null || true
stop
exit 1
