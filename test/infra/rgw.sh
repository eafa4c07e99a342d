#!/usr/bin/env bash
# A real S3 endpoint for tests: a one-node Ceph cluster (1 monitor, 1 OSD) with the RADOS Gateway,
# bound to 127.0.0.1 only. No cephx, no mgr, no systemd; every file lives under $DIR.
# Needs: radosgw ceph-mon ceph-osd curl (scripts/ensure-system-deps.sh test installs them).
#
#   rgw.sh start        wipe $DIR, create a new cluster, an S3 user and $BUCKET, wait until S3 works
#   rgw.sh stop         stop this cluster's daemons: radosgw, then the OSD, then the monitor
#   rgw.sh kill         stop them at once with SIGKILL (memstore objects are lost, and not written
#                       to disk first: for a cluster whose $DIR is deleted next)
#   rgw.sh restart      stop and start all daemons on the existing $DIR
#   rgw.sh restart-rgw  restart radosgw only (objects and open multipart uploads survive)
#   rgw.sh status       exit 0 if all daemons run and an authenticated HEAD on $BUCKET succeeds
#
# env: DIR (required), RGW_PORT (7480), MON_PORT (3300), STORE (memstore|bluestore),
#      AK / SK (S3 access key and secret), BUCKET (created at start).
#   STORE=memstore   objects in OSD memory; kept over a clean stop/restart, lost if the OSD is
#                    killed with SIGKILL. Fast (~2 s start). The default.
#   STORE=bluestore  objects in a sparse 20G file $DIR/osd/block; survive SIGKILL of everything.
# `start` records these values in $DIR/rgw.env; the other commands read them from there.
# Exit codes: 0 ok, 1 failure, 2 usage, 3 a port is already in use (pick other ports).
set -euo pipefail

DIR=${DIR:?set DIR to a scratch folder for the Ceph cluster}
DIR=$(realpath -m -- "$DIR")  # daemons are found by their absolute ceph.conf path
DIR=${DIR%/}
CMD=${1:-start}
CONF=$DIR/ceph.conf
SAVED=$DIR/rgw.env
if [ "$CMD" != start ] && [ -f "$SAVED" ]; then
  # shellcheck disable=SC1090
  . "$SAVED"
fi
RGW_PORT=${RGW_PORT:-7480} MON_PORT=${MON_PORT:-3300} STORE=${STORE:-memstore}
AK=${AK:-tusk-test-key} SK=${SK:-tusk-test-secret} BUCKET=${BUCKET:-tusk-test}
ENDPOINT=http://127.0.0.1:$RGW_PORT

say() { echo "rgw.sh: $*" >&2; }

# ---- processes (read from /proc: no procps needed; a zombie counts as gone) ----------------------
alive() { local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; stat=${stat##*) }; [ "${stat%% *}" != Z ]; }
# PIDs of live processes running binary $1 (any binary if empty) with this cluster's ceph.conf.
cluster_pids() {
  local want=$1 p argv
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    mapfile -d '' -t argv <"/proc/$p/cmdline" 2>/dev/null || continue
    [ ${#argv[@]} -gt 0 ] || continue
    if [ -n "$want" ] && [ "${argv[0]##*/}" != "$want" ]; then continue; fi
    case " ${argv[*]} " in *" $CONF "*) alive "$p" && echo "$p" ;; esac
  done
}
# Stops one daemon (mon|osd|rgw): the PID in its pidfile plus any other process of that binary
# using our ceph.conf. SIGTERM (or $2), SIGKILL after 10 s.
stop_daemon() {
  local name=$1 sig=${2:-TERM} bin pids p
  case $name in mon) bin=ceph-mon ;; osd) bin=ceph-osd ;; rgw) bin=radosgw ;; esac
  pids=$(cluster_pids "$bin")
  rm -f "$DIR/$name.pid"
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -"$sig" $pids 2>/dev/null || true
  for _ in $(seq 100); do
    local left=
    for p in $pids; do alive "$p" && left=1; done
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  say "$bin did not stop within 10 s; killing it"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  for _ in $(seq 50); do
    local left=
    for p in $pids; do alive "$p" && left=1; done
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  say "could not kill $bin ($pids)"; return 1
}
# Order matters: radosgw needs the OSD, the OSD needs the monitor (stopping them together takes 10+ s).
stop_all() {
  local rc=0
  stop_daemon rgw "$@" || rc=1; stop_daemon osd "$@" || rc=1; stop_daemon mon "$@" || rc=1
  local stray; stray=$(cluster_pids '')   # e.g. a hung `ceph` or `radosgw-admin` from a failed start
  # shellcheck disable=SC2086
  if [ -n "$stray" ]; then kill -KILL $stray 2>/dev/null || true; fi
  return $rc
}
launch() {  # launch NAME BINARY ARGS...: in its own session, foreground mode, output to log/NAME.out
  local name=$1; shift
  setsid "$@" -f </dev/null >>"$DIR/log/$name.out" 2>&1 &
  echo $! >"$DIR/$name.pid"
}
launch_mon() { launch mon ceph-mon -c "$CONF" -i a; }
launch_osd() { launch osd ceph-osd -c "$CONF" -i 0; }
launch_rgw() { launch rgw radosgw -c "$CONF" -n client.rgw; }

# ---- S3 ------------------------------------------------------------------------------------------
s3() { curl -fsS --aws-sigv4 aws:amz:us-east-1:s3 -u "$AK:$SK" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"; }
# An anonymous GET / is answered even when RADOS is stuck; a HEAD on the bucket really reads RADOS.
rgw_answers() { curl -fs -m 2 -o /dev/null "$ENDPOINT/"; }
bucket_ok() { s3 -m 2 -o /dev/null -I "$ENDPOINT/$BUCKET" 2>/dev/null; }
wait_for() {  # wait_for WHAT SECONDS COMMAND...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then say "$what not ready after ${secs} s; logs in $DIR/log"; return 1; fi
    sleep 0.2
  done
}
daemons_alive() {
  local n
  for n in mon osd rgw; do [ -f "$DIR/$n.pid" ] && alive "$(cat "$DIR/$n.pid")" || return 1; done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_ports() {
  if [ "$RGW_PORT" = "$MON_PORT" ]; then say "RGW_PORT and MON_PORT must differ"; exit 2; fi
  local p
  for p in "$MON_PORT" "$RGW_PORT"; do
    if port_busy "$p"; then say "port $p is already in use on 127.0.0.1"; exit 3; fi
  done
}
need() {
  local b
  for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl; do
    command -v "$b" >/dev/null || { say "$b not installed; run: bash scripts/ensure-system-deps.sh test"; exit 1; }
  done
}

# On a failed start/restart: show where to look, and leave no daemon behind.
ok=
on_exit() {
  local rc=$?
  [ -n "$ok" ] && return
  [ $rc -ne 0 ] || return
  say "$CMD failed (exit $rc); logs in $DIR/log"
  local f
  for f in "$DIR"/log/*.out "$DIR"/log/mkfs.log; do
    [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 5 "$f" >&2; }
  done
  stop_all KILL >/dev/null 2>&1 || true
}

case $CMD in
  stop) stop_all; exit ;;
  kill) stop_all KILL; exit ;;
  status) daemons_alive && bucket_ok; exit ;;
  restart | restart-rgw)
    [ -f "$CONF" ] || { say "no cluster in $DIR (run start first)"; exit 1; }
    need
    trap on_exit EXIT
    if [ "$CMD" = restart ]; then
      stop_all
      if port_busy "$MON_PORT" || port_busy "$RGW_PORT"; then say "port $MON_PORT or $RGW_PORT taken by someone else"; exit 3; fi
      launch_mon; launch_osd; launch_rgw
    else
      stop_daemon rgw
      if port_busy "$RGW_PORT"; then say "port $RGW_PORT taken by someone else"; exit 3; fi
      launch_rgw
    fi
    wait_for S3 60 bucket_ok
    ok=1; echo "S3 ready ($CMD): $ENDPOINT"; exit 0 ;;
  start) ;;
  *) echo "usage: DIR=... $0 start|stop|kill|restart|restart-rgw|status" >&2; exit 2 ;;
esac

# ---- start: a brand-new cluster --------------------------------------------------------------------
case $STORE in memstore | bluestore) ;; *) say "STORE must be memstore or bluestore"; exit 2 ;; esac
need
if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ] && [ ! -f "$CONF" ] && [ ! -f "$SAVED" ]; then
  say "$DIR is not empty and was not made by rgw.sh; refusing to wipe it"; exit 1
fi
if [ -f "$CONF" ]; then stop_all KILL; fi   # an old cluster in this DIR: its data is wiped anyway
check_ports
trap on_exit EXIT
rm -rf "$DIR"
mkdir -p "$DIR"/{mon,osd,log,run}
printf 'RGW_PORT=%q\nMON_PORT=%q\nSTORE=%q\nAK=%q\nSK=%q\nBUCKET=%q\n' \
  "$RGW_PORT" "$MON_PORT" "$STORE" "$AK" "$SK" "$BUCKET" >"$SAVED"

# Unix socket paths are limited to 107 bytes: without admin sockets if $DIR is deep.
admin_socket="$DIR/run/\$name.asok"
if [ ${#DIR} -gt 80 ]; then admin_socket=; fi

fsid=$(cat /proc/sys/kernel/random/uuid)
cat >"$CONF" <<EOF
# Generated by test/infra/rgw.sh: single-node test cluster, loopback only, no authentication.
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms mon client mode = crc
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
admin socket = $admin_socket
log file = $DIR/log/\$name.log
mon data = $DIR/mon
osd data = $DIR/osd
osd objectstore = $STORE
memstore device bytes = 8G
bluestore block create = true
bluestore block size = 20G
bluestore fsck on mkfs = false
osd memory target = 1G
# a clean stop must flush memstore state so that restart keeps the objects
osd fast shutdown = false
# one OSD: one replica, few placement groups, no redundancy warnings
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
# do not stop on a fairly full disk
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.1

[client]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw thread pool size = 128
objecter tick interval = 0.5
EOF

started=$SECONDS
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
timeout 60 ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" >"$DIR/log/mkfs.log" 2>&1
launch_mon
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
# Registers osd.0 with the monitor (waits for the monitor to come up).
timeout 60 ceph -c "$CONF" osd new "$osd_uuid" >/dev/null 2>>"$DIR/log/mkfs.log"
timeout 120 ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/mkfs.log" 2>&1
launch_osd
launch_rgw   # creates its pools on first start
wait_for radosgw 60 rgw_answers
timeout 60 radosgw-admin -c "$CONF" user create --uid=tusk-test --display-name='tusk tests' \
  --access-key="$AK" --secret-key="$SK" >/dev/null
# radosgw-admin (Pacific) cannot create buckets: create it over S3.
wait_for "bucket $BUCKET" 60 s3 -m 10 -o /dev/null -X PUT "$ENDPOINT/$BUCKET"
wait_for S3 60 bucket_ok
ok=1
echo "S3 ready in $((SECONDS - started)) s: endpoint=$ENDPOINT region=us-east-1 path-style key=$AK bucket=$BUCKET store=$STORE dir=$DIR"
