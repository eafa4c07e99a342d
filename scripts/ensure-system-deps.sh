#!/usr/bin/env bash
# Makes sure the system programs tusk needs are installed (Debian/Ubuntu, apt-get).
#   scripts/ensure-system-deps.sh start   all-in-one mode: redis-server, unless REDIS_URL is set;
#                                         ffmpeg/ffprobe, and clamd + freshclam (with the CA
#                                         certificates its HTTPS download needs) for the private
#                                         clamd, unless CLAMD_SOCKET / CLAMD_HOST is set
#   scripts/ensure-system-deps.sh test    the test suite: redis-server, Ceph RGW (mon, osd, radosgw), curl,
#                                         clamd (own test signatures), ffmpeg/ffprobe, promtool (the
#                                         alert rules are checked and unit-tested with it), chromium
#                                         (the upload page's browser tests)
# Idempotent: when every program is already there it only checks PATH (no apt-get update).
# Installs as root, or through sudo; otherwise prints the command to run and exits non-zero.
set -euo pipefail

usage() { echo "usage: $0 start|test" >&2; exit 2; }
[ $# -eq 1 ] || usage

# Each entry: "<program to look for>:<Debian package that provides it>".
case "$1" in
  start)
    # processing workers: ffmpeg/ffprobe (thumbnails, transcodes)
    wanted=(ffmpeg:ffmpeg ffprobe:ffmpeg)
    # the private clamd (virus scan) and freshclam, which downloads its signatures over HTTPS;
    # an external clamd needs none of them
    if [ -z "${CLAMD_SOCKET:-}${CLAMD_HOST:-}" ]; then
      wanted+=(clamd:clamav-daemon clamscan:clamav freshclam:clamav-freshclam update-ca-certificates:ca-certificates)
    fi
    # an external Redis (REDIS_URL) needs no local redis-server
    if [ -z "${REDIS_URL:-}" ]; then wanted+=(redis-server:redis-server); fi
    ;;
  test)
    wanted=(
      redis-server:redis-server redis-cli:redis-tools
      radosgw:radosgw radosgw-admin:ceph-common ceph:ceph-common
      ceph-mon:ceph-mon monmaptool:ceph-base ceph-osd:ceph-osd
      curl:curl
      clamd:clamav-daemon clamscan:clamav ffmpeg:ffmpeg ffprobe:ffmpeg
      promtool:prometheus
      chromium:chromium
    )
    ;;
  *) usage ;;
esac

# Debian keeps some daemons in /usr/sbin, which is not always on PATH for non-root users.
has() {
  local dir
  local IFS=:
  for dir in $PATH /usr/sbin /sbin; do
    if [ -f "${dir:-.}/$1" ] && [ -x "${dir:-.}/$1" ]; then return 0; fi
  done
  return 1
}

missing=()
for entry in "${wanted[@]}"; do
  program=${entry%%:*} package=${entry#*:}
  if ! has "$program"; then
    case " ${missing[*]:-} " in *" $package "*) ;; *) missing+=("$package") ;; esac
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

manual="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-deps: missing packages: ${missing[*]}" >&2
  echo "ensure-system-deps: this system has no apt-get; install the equivalent packages by hand (Debian: $manual)" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "ensure-system-deps: missing packages: ${missing[*]}" >&2
  echo "ensure-system-deps: not root and no password-less sudo; run this, then try again:" >&2
  echo "  sudo sh -c '$manual'" >&2
  exit 1
fi

echo "ensure-system-deps: installing ${missing[*]} ..." >&2
# Keep apt from starting the packages' own services (a system Redis on 6379, Ceph units):
# we run private instances. policy-rc.d is the standard Debian switch for this; add a temporary
# one only if the system has none, and remove it again afterwards.
policy=/usr/sbin/policy-rc.d
added_policy=
cleanup() { if [ -n "$added_policy" ]; then "${as_root[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# temporary, added by tusk scripts/ensure-system-deps.sh\nexit 101\n' \
    | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  added_policy=1
fi

apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update -qq ||
   ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq \
       --no-install-recommends "${missing[@]}"; then
  echo "ensure-system-deps: apt-get failed; to install by hand run: $manual" >&2
  exit 1
fi

for entry in "${wanted[@]}"; do
  if ! has "${entry%%:*}"; then
    echo "ensure-system-deps: ${entry%%:*} still not found after installing ${entry#*:}" >&2
    exit 1
  fi
done
echo "ensure-system-deps: installed ${missing[*]}" >&2
