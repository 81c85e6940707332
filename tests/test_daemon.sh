#!/bin/sh
# dkimhsmd end to end on a fresh token: health and metrics over HTTP, signing
# through the agent socket (dkimhsm-sign --agent) verified by dkimpy, an
# oversized frame refused, SIGHUP picking up a new key without a restart,
# SIGTERM exiting cleanly. Everything it starts it stops, by PID.
#
# usage (via lib/with-token.sh): test_daemon.sh BINDIR
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
d=$DKIMHSM_TEST_DIR
py=/usr/bin/python3
passed=0
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; [ -f "$d/daemon.log" ] && tail -20 "$d/daemon.log"; exit 1; }
ok() { passed=$((passed + 1)); }
kc() { "$bin/dkim-keyctl" -c "$d/d.conf" "$@"; }

port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cp "$DKIMHSM_TEST_CONF" "$d/d.conf"
cat >> "$d/d.conf" <<CONF
agent_socket = $d/agent.sock
http_listen = 127.0.0.1:$port
workers = 2
CONF
kc create example.com rsa1 >/dev/null
kc create example.com ed1 --alg ed25519 >/dev/null
kc activate example.com rsa1 --force >/dev/null
kc activate example.com ed1 --force >/dev/null
kc dns example.com > "$d/zone"

"$bin/dkimhsmd" -c "$d/d.conf" -f 2> "$d/daemon.log" &
pid=$!
i=0
while [ ! -S "$d/agent.sock" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "daemon did not create its socket"
  kill -0 "$pid" 2>/dev/null || fail "daemon exited"
  sleep 0.1
done

http() { $py -c 'import sys, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())' "http://127.0.0.1:$port$1"; }
http /healthz > "$d/health"
head -1 "$d/health" | grep -qx 200 || fail "healthz: $(cat "$d/health")"
grep -q '"token_logged_in":true' "$d/health" || fail "healthz body: $(cat "$d/health")"; ok

msg="$here/data/messages/plain-crlf.eml"
"$bin/dkimhsm-sign" -c "$d/d.conf" --agent "$d/agent.sock" --alg both < "$msg" > "$d/signed.eml" ||
  fail "sign through the agent"
$py "$here/verify/dkimpy_verify.py" "$d/zone" "$d/signed.eml" --expect 2 >/dev/null ||
  fail "dkimpy on the agent-signed message"; ok

http /metrics > "$d/metrics"
grep -q '^dkimhsm_signatures_total{alg="rsa-sha256"} 1' "$d/metrics" || fail "metrics: rsa count"
grep -q '^dkimhsm_signatures_total{alg="ed25519-sha256"} 1' "$d/metrics" || fail "metrics: ed count"
grep -q '^dkimhsm_token_sign_ms_bucket' "$d/metrics" || fail "metrics: latency histogram"; ok

# A frame announcing more than 1 MiB is refused before anything is read.
$py - "$d/agent.sock" <<'PY' || fail "oversized frame"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
s.sendall(struct.pack(">I", 2 * 1024 * 1024) + b"\x01")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
assert len(data) >= 9 and data[4] == 0xFF, data   # ERROR frame, then the daemon closed
PY
ok

# A key created after start does not sign while it is only created (not
# even after SIGHUP); once activated it signs within a second, no signal
# needed (the daemon watches the state database).
kc create example.org new1 --alg ed25519 >/dev/null
kc dns example.org > "$d/zone2"
printf 'From: x@example.org\r\nTo: y@example.net\r\nSubject: after reload\r\n\r\nhi\r\n' > "$d/org.eml"
kill -HUP "$pid"
sleep 0.5
if "$bin/dkimhsm-sign" -c "$d/d.conf" --agent "$d/agent.sock" < "$d/org.eml" >/dev/null 2>&1; then
  fail "example.org signed with a key that is only created"
fi
kc activate example.org new1 --force >/dev/null
sleep 1
"$bin/dkimhsm-sign" -c "$d/d.conf" --agent "$d/agent.sock" < "$d/org.eml" > "$d/org.signed" ||
  fail "sign within a second of activation"
$py "$here/verify/dkimpy_verify.py" "$d/zone2" "$d/org.signed" --expect 1 >/dev/null ||
  fail "dkimpy after activation"; ok

# Revoked: out of use at once.
kc revoke example.org new1 >/dev/null
sleep 1
if "$bin/dkimhsm-sign" -c "$d/d.conf" --agent "$d/agent.sock" < "$d/org.eml" >/dev/null 2>&1; then
  fail "example.org still signed a second after revocation"
fi
ok

kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "daemon did not exit on SIGTERM"
  sleep 0.1
done
wait "$pid" || fail "daemon exit status $?"
pid=""
[ ! -S "$d/agent.sock" ] || fail "socket left behind"; ok

# A wrong PIN: dkimhsmd refuses to start (exit 3) and the audit log says so.
(umask 077; echo 0000 > "$d/bad.pin")
sed "s|^pin_file = .*|pin_file = $d/bad.pin|" "$d/d.conf" > "$d/badpin.conf"
rc=0; "$bin/dkimhsmd" -c "$d/badpin.conf" -f 2> "$d/badpin.log" || rc=$?
[ $rc = 3 ] || fail "wrong PIN: exit $rc: $(tail -2 "$d/badpin.log")"
kc audit | grep -q ' dkimhsmd login-failure .*CKR_PIN_INCORRECT' ||
  fail "daemon login failure not audited: $(kc audit | tail -2)"; ok

# Started as root with user = nobody: it opens the token and the socket as
# root, then runs as nobody and still signs. (Skipped when not root.) The
# token files, state and PIN must be readable by that user, as in a real
# deployment; this temp dir is handed over for the purpose.
if [ "$(id -u)" = 0 ] && nobody=$(id -u nobody 2>/dev/null); then
  mkdir "$d/run"
  chown -R nobody "$d/tokens" "$d/state" "$d/pin" "$d/run"
  chmod 711 "$d"; chmod 644 "$SOFTHSM2_CONF"
  sed "s|^agent_socket = .*|agent_socket = $d/run/agent.sock|; /^http_listen/d" "$d/d.conf" > "$d/p.conf"
  echo "user = nobody" >> "$d/p.conf"
  "$bin/dkimhsmd" -c "$d/p.conf" -f 2> "$d/daemon.log" &
  pid=$!
  i=0
  until [ -S "$d/run/agent.sock" ] && grep -q "running as user nobody" "$d/daemon.log"; do
    i=$((i + 1)); [ $i -lt 100 ] || fail "daemon with user = nobody did not come up"
    kill -0 "$pid" 2>/dev/null || fail "daemon with user = nobody exited"
    sleep 0.1
  done
  uids=$(awk '$1 == "Uid:" { print $2, $3, $4, $5 }' "/proc/$pid/status")
  [ "$uids" = "$nobody $nobody $nobody $nobody" ] || fail "still running as uid(s) $uids"
  [ "$(stat -c %u "$d/run/agent.sock")" = "$nobody" ] || fail "agent socket not handed to nobody"
  "$bin/dkimhsm-sign" -c "$d/p.conf" --agent "$d/run/agent.sock" < "$msg" > "$d/nobody.eml" ||
    fail "sign through a daemon running as nobody"
  $py "$here/verify/dkimpy_verify.py" "$d/zone" "$d/nobody.eml" --expect 2 >/dev/null ||
    fail "dkimpy on the message signed as nobody"
  kill -TERM "$pid"; wait "$pid" || fail "daemon (nobody) exit status $?"
  pid=""
  [ ! -S "$d/run/agent.sock" ] || fail "socket left behind by the daemon running as nobody"; ok
else
  echo "SKIP: privilege drop (needs root and a user nobody)"
fi

echo "$passed passed, 0 failed"
