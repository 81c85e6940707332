#!/bin/sh
# Runs a command next to a real authoritative DNS server of its own: knotd
# (Debian package knot) on 127.0.0.1, a free port, everything it writes
# (config, zones, journal, timers, control socket, PID) inside a temporary
# directory that is removed afterwards. Never touches /etc/knot, /var/lib/knot
# or /run/knot, and never a system knotd.
#
#   with-dns.sh ZONEDIR -- COMMAND [ARGS...]
#
# Every ZONEDIR/NAME.zone becomes the zone NAME (origin NAME.; the file may
# use relative names and "@"). Each zone accepts RFC 2136 updates signed with
# a TSIG key generated for this run, and nothing unsigned.
#
# Exports for COMMAND:
#   DKIMHSM_TEST_DNS_SERVER    127.0.0.1:PORT (dns_server / dns_update_server)
#   DKIMHSM_TEST_DNS_PORT      PORT
#   DKIMHSM_TEST_DNS_DIR       the temp directory (COMMAND may write here)
#   DKIMHSM_TEST_DNS_ZONES     directory of the served zone files (NAME.zone)
#   DKIMHSM_TEST_DNS_CONF      knot.conf (for `knotc -c`)
#   DKIMHSM_TEST_DNS_SOCKET    knotc control socket (`knotc -s SOCKET zone-reload`)
#   DKIMHSM_TEST_TSIG_FILE     "NAME ALG SECRET", mode 600 (tsig_key_file)
#   DKIMHSM_TEST_TSIG          "ALG:NAME:SECRET" (for `knsupdate -y`)
#
# DKIMHSM_TEST_TSIG_ALG picks the TSIG algorithm (default hmac-sha256).
#
# Exit status: COMMAND's; 77 (skip) when knotd is not installed; 1 when
# knotd does not come up (its log is printed).
set -eu

[ $# -ge 3 ] && [ "$2" = "--" ] || { echo "usage: with-dns.sh ZONEDIR -- COMMAND..." >&2; exit 2; }
zonesrc=$1
shift 2

knotd=$(command -v knotd || true)
[ -n "$knotd" ] || { echo "with-dns.sh: knotd not found (run deploy/bootstrap.sh)" >&2; exit 77; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/dkimhsm-dns.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    # knotd flushes and exits within a few ms; do not leave it behind.
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
mkdir -p "$dir/zones" "$dir/db" "$dir/run"

port=$(/usr/bin/python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", s.getsockname()[1])); print(s.getsockname()[1])')
secret=$(/usr/bin/python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
keyname=dkimhsm-test-key
alg=${DKIMHSM_TEST_TSIG_ALG:-hmac-sha256} # or hmac-md5, -sha1, -sha512

(umask 077; printf '%s %s %s\n' "$keyname" "$alg" "$secret" > "$dir/tsig.key")

zones=""
for f in "$zonesrc"/*.zone; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .zone)
  cp "$f" "$dir/zones/$name.zone"
  zones="$zones $name"
done
[ -n "$zones" ] || { echo "with-dns.sh: no *.zone in $zonesrc" >&2; exit 2; }

# Knot 3.2: storage, every database, rundir and the PID file in $dir; the
# journal keeps nothing (updates live in memory) and the zone file is never
# rewritten, so a reload always starts from what the test wrote.
{
  cat <<CONF
server:
    rundir: "$dir/run"
    pidfile: "$dir/run/knot.pid"
    listen: 127.0.0.1@$port
    tcp-reuseport: off
    background-workers: 1
    udp-workers: 1
    tcp-workers: 1
database:
    storage: "$dir/db"
control:
    listen: "$dir/run/knot.sock"
log:
  - target: "$dir/knot.log"
    any: info
key:
  - id: $keyname
    algorithm: $alg
    secret: $secret
acl:
  - id: test-update
    key: $keyname
    action: update
template:
  - id: default
    storage: "$dir/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
    acl: test-update
zone:
CONF
  for z in $zones; do printf '  - domain: %s\n' "$z"; done
} > "$dir/knot.conf"
chmod 600 "$dir/knot.conf" # holds the TSIG secret

start_ns=$(date +%s%N)
"$knotd" -c "$dir/knot.conf" 2>>"$dir/knot.log" &
pid=$!

# Up when every zone answers its SOA over UDP (knotd loads zones after it
# binds, so the port alone is not enough).
/usr/bin/python3 - "$port" "$zones" <<'PY' || { cat "$dir/knot.log" >&2; exit 1; }
import socket, struct, sys, time
port, zones = int(sys.argv[1]), sys.argv[2].split()
def soa_ok(zone):
    q = struct.pack(">HHHHHH", 0x1234, 0, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in zone.split(".")) + b"\0"
    q += struct.pack(">HH", 6, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.05)
    try:
        s.sendto(q, ("127.0.0.1", port))
        r = s.recv(4096)
    except OSError:
        return False
    finally:
        s.close()
    return len(r) >= 12 and r[3] & 0x0F == 0 and struct.unpack(">H", r[6:8])[0] > 0
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    if all(soa_ok(z) for z in zones):
        sys.exit(0)
    time.sleep(0.01)
sys.exit(1)
PY
[ -z "${DKIMHSM_TEST_DNS_TIMING:-}" ] ||
  echo "with-dns.sh: knotd answered after $((($(date +%s%N) - start_ns) / 1000000)) ms" >&2

DKIMHSM_TEST_DNS_SERVER="127.0.0.1:$port"
DKIMHSM_TEST_DNS_PORT=$port
DKIMHSM_TEST_DNS_DIR=$dir
DKIMHSM_TEST_DNS_ZONES="$dir/zones"
DKIMHSM_TEST_DNS_CONF="$dir/knot.conf"
DKIMHSM_TEST_DNS_SOCKET="$dir/run/knot.sock"
DKIMHSM_TEST_TSIG_FILE="$dir/tsig.key"
DKIMHSM_TEST_TSIG="$alg:$keyname:$secret"
export DKIMHSM_TEST_DNS_SERVER DKIMHSM_TEST_DNS_PORT DKIMHSM_TEST_DNS_DIR DKIMHSM_TEST_DNS_ZONES \
       DKIMHSM_TEST_DNS_CONF DKIMHSM_TEST_DNS_SOCKET DKIMHSM_TEST_TSIG_FILE DKIMHSM_TEST_TSIG

# Not exec: the trap must stop knotd and remove the directory.
set +e
"$@"
rc=$?
exit $rc
