#!/bin/sh
# DNS unreachable does not stop signing. dns_server is a UDP socket that takes
# queries and never answers, so each DNS query waits for dns/'s timeout (3 s).
#  1. The lifecycle timer asks DNS from a thread of its own: once its first
#     query has arrived, it is stuck in that wait, and a signature through the
#     agent must come back, and verify, before the next query arrives. (With
#     the timer on the event loop, the signature would come back only after
#     the timeout, when the timer moves on to its next query.)
#  2. The management API runs on a thread of its own too: while an activation
#     waits on DNS, a signature is made, and the daemon logs the signature
#     before the API request's outcome (on the loop, the API's wait would come
#     first).
# SIGTERM while a thread waits on DNS still ends the daemon. Everything it
# starts it stops, by PID.
#
# usage (via lib/with-token.sh): test_dns_down.sh BINDIR
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
d=$DKIMHSM_TEST_DIR
py=/usr/bin/python3
pid="" hole=""
cleanup() {
  for p in $pid $hole; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; [ -f "$d/daemon.log" ] && tail -20 "$d/daemon.log"; exit 1; }
kc() { "$bin/dkim-keyctl" -c "$d/t.conf" "$@"; }

# The black hole: logs one line per datagram, answers nothing.
$py -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % s.getsockname()[1]); f.flush()
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        s.recvfrom(4096)
        log.write("query\n")
' "$d/hole.port" "$d/hole.log" &
hole=$!
i=0
while [ ! -s "$d/hole.port" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "black hole did not start"; sleep 0.1
done
queries() { [ -f "$d/hole.log" ] && wc -l < "$d/hole.log" || echo 0; }

cp "$DKIMHSM_TEST_CONF" "$d/t.conf"
cat >> "$d/t.conf" <<CONF
agent_socket = $d/agent.sock
dns_server = 127.0.0.1:$(cat "$d/hole.port")
CONF
kc create example.com ed1 --alg ed25519 >/dev/null
kc activate example.com ed1 --force >/dev/null
kc dns example.com > "$d/zone"

DKIMHSM_LIFETIMER_MS=100 "$bin/dkimhsmd" -c "$d/t.conf" -f 2> "$d/daemon.log" &
pid=$!
i=0
while [ "$(queries)" -lt 1 ]; do
  i=$((i + 1)); [ $i -lt 200 ] || fail "the timer never asked DNS"
  kill -0 "$pid" 2>/dev/null || fail "daemon exited"
  sleep 0.05
done
[ -S "$d/agent.sock" ] || fail "no agent socket"

"$bin/dkimhsm-sign" -c "$d/t.conf" --agent "$d/agent.sock" \
  < "$here/data/messages/plain-crlf.eml" > "$d/signed.eml" || fail "sign through the agent"
n=$(queries)
[ "$n" -eq 1 ] || fail "the signature came back only after the timer's DNS wait ($n queries seen)"
$py "$here/verify/dkimpy_verify.py" "$d/zone" "$d/signed.eml" --expect 1 >/dev/null ||
  fail "dkimpy on the message signed while DNS was down"

# SIGTERM while the timer waits on DNS: the daemon still exits by itself.
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 150 ] || fail "daemon did not exit on SIGTERM"; sleep 0.1
done
wait "$pid" 2>/dev/null || fail "daemon exit status after SIGTERM"
pid=""

# ---- 2. the management API waiting on DNS
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=$($py -c 'import secrets; print(secrets.token_hex(24))')
(umask 077; printf '%s\n' "$token" > "$d/api.token")
cat >> "$d/t.conf" <<CONF
http_listen = 127.0.0.1:$port
api_token_file = $d/api.token
CONF
kc create example.com new1 --alg ed25519 >/dev/null
: > "$d/daemon.log"
# One tick at start (a query per record, each timing out), then none for a day.
DKIMHSM_LIFETIMER_MS=86400000 "$bin/dkimhsmd" -c "$d/t.conf" -f 2> "$d/daemon.log" &
pid=$!
i=0
while [ "$(grep -c 'timer: publishing' "$d/daemon.log")" -lt 2 ]; do
  i=$((i + 1)); [ $i -lt 300 ] || fail "the timer's first tick did not end"
  kill -0 "$pid" 2>/dev/null || fail "daemon exited"
  sleep 0.05
done
before=$(queries)
$py -c '
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], method="POST")
req.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    r = urllib.request.urlopen(req, timeout=30); print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
' "http://127.0.0.1:$port/api/v1/domains/example.com/keys/new1/activate" "$token" \
  > "$d/api.status" 2>&1 &
client=$!
i=0
while [ "$(queries)" -le "$before" ]; do
  i=$((i + 1)); [ $i -lt 200 ] || fail "the API never asked DNS"
  sleep 0.05
done
"$bin/dkimhsm-sign" -c "$d/t.conf" --agent "$d/agent.sock" \
  < "$here/data/messages/plain-crlf.eml" > "$d/signed2.eml" || fail "sign while the API waits"
wait "$client" || true
[ "$(cat "$d/api.status")" = 503 ] || fail "activation while DNS is down: $(cat "$d/api.status")"
sign_line=$(grep -n 'dkimhsmd info: sign d=example.com' "$d/daemon.log" | head -1 | cut -d: -f1)
api_line=$(grep -n 'api: .* POST .*/new1/activate' "$d/daemon.log" | head -1 | cut -d: -f1)
[ -n "$sign_line" ] && [ -n "$api_line" ] || fail "log lines: sign '$sign_line', api '$api_line'"
[ "$sign_line" -lt "$api_line" ] ||
  fail "the signature waited for the API's DNS query (log lines $sign_line, $api_line)"
$py "$here/verify/dkimpy_verify.py" "$d/zone" "$d/signed2.eml" --expect 1 >/dev/null ||
  fail "dkimpy on the message signed while the API waited"
kill -TERM "$pid"
wait "$pid" 2>/dev/null || fail "daemon exit status after SIGTERM (2)"
pid=""
echo "PASS: test_dns_down (signed while the timer, then the API, waited on DNS)"
