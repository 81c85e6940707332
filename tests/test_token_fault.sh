#!/bin/sh
# Token failure under load: dkimhsmd (2 workers) behind dkimhsm-milter, our
# load generator playing the MTA. dkimhsmd loads SoftHSM through the test
# shim (tests/fault/p11shim.c), which in dkimhsmd's own process closes every
# session, logs it out, or plays a removed / absent token; and SoftHSM's
# token directory is moved away and back, which SoftHSM itself notices. For
# each fault, under load: no message errors, each one is signed (and verifies
# with dkimpy) or tempfailed, /healthz says 503 while the token is down, and
# signing resumes by itself - no restart. Everything started is stopped by PID.
#
# usage (via lib/with-token.sh): test_token_fault.sh BINDIR SHIM
set -eu
bin=$1
shim=$2
here=$(cd "$(dirname "$0")" && pwd)
d=$DKIMHSM_TEST_DIR
load=$bin/tests/milterload
py=/usr/bin/python3
ctl=$d/ctl
passed=0
dpid="" mpid="" lpid=""
cleanup() {
  for p in $lpid $mpid $dpid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; for f in daemon milter; do [ -f "$d/$f.log" ] && tail -8 "$d/$f.log"; done; exit 1; }
ok() { passed=$((passed + 1)); }
wait_sock() { i=0; while [ ! -S "$1" ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "no socket $1"; sleep 0.1; done; }
field() { sed -n "s/.*RESULT.* $1=\([^ ]*\).*/\1/p" "$2"; }
http_code() { $py -c 'import sys, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())' "http://127.0.0.1:$port/healthz" > "$d/health"
  head -1 "$d/health"; }
# Polls /healthz until it answers $1 (up to 10 s).
wait_health() { i=0; while [ "$(http_code)" != "$1" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "healthz never said $1: $(cat "$d/health")"; sleep 0.1; done; }

mkdir -p "$ctl"
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" create example.com rsa1 >/dev/null
"$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" create example.com ed1 --alg ed25519 >/dev/null
"$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" activate example.com rsa1 --force >/dev/null
"$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" activate example.com ed1 --force >/dev/null
"$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" dns example.com > "$d/zone"
sed "s|^pkcs11_module = .*|pkcs11_module = $shim|" "$DKIMHSM_TEST_CONF" > "$d/f.conf"
printf 'agent_socket = %s/agent.sock\nmilter_socket = unix:%s/milter.sock\nworkers = 2\nhttp_listen = 127.0.0.1:%s\n' \
  "$d" "$d" "$port" >> "$d/f.conf"

DKIMHSM_SHIM_TARGET=$DKIMHSM_TEST_MODULE DKIMHSM_SHIM_CTL=$ctl \
  "$bin/dkimhsmd" -c "$d/f.conf" -f 2> "$d/daemon.log" & dpid=$!
wait_sock "$d/agent.sock"
"$bin/dkimhsm-milter" -c "$d/f.conf" 2> "$d/milter.log" & mpid=$!
wait_sock "$d/milter.sock"
[ "$(http_code)" = 200 ] || fail "healthz before: $(cat "$d/health")"
"$load" -s "unix:$d/milter.sock" -n 20 --expect-sign 2 > "$d/l0" || { cat "$d/l0"; fail "before any fault"; }; ok

# The fault $1 while the load runs. closeall and logout are consumed by the
# shim at once; the others last about 1.5 s, and /healthz must say 503 then.
inject() {
  case $1 in
  closeall | logout)
    touch "$ctl/$1"
    i=0; while [ ! -f "$ctl/$1.done" ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "$1 not consumed"; sleep 0.1; done
    grep -qx "rv=0x0" "$ctl/$1.done" || fail "$1 failed in the shim: $(cat "$ctl/$1.done")" ;;
  removed | notpresent)
    touch "$ctl/$1"; sleep 1.5
    [ "$(http_code)" = 503 ] || fail "healthz during $1: $(cat "$d/health")"
    rm "$ctl/$1" ;;
  moved)
    tok=$(ls -d "$d"/tokens/*/ | head -1)
    mv "$tok" "$d/away"; sleep 1.5
    [ "$(http_code)" = 503 ] || fail "healthz with the token directory away: $(cat "$d/health")"
    mv "$d/away" "$tok" ;;
  esac
}

# Load, fault, load ends: errors 0, signed + tempfail = msgs, something was
# signed; then, once /healthz is back at 200, every message is signed again.
fault_under_load() {
  f=$1
  "$load" -s "unix:$d/milter.sock" -c 8 -t 4 --unique --sample 1 -o "$d/s-$f" > "$d/l-$f" & lpid=$!
  sleep 1
  inject "$f"
  wait "$lpid" || true; lpid=""
  msgs=$(field msgs "$d/l-$f"); signed=$(field signed "$d/l-$f"); tf=$(field tempfail "$d/l-$f")
  [ -n "$msgs" ] && [ "$(field errors "$d/l-$f")" = 0 ] && [ $((signed + tf)) = "$msgs" ] &&
    [ "$signed" -gt 0 ] || fail "$f under load: $(tail -1 "$d/l-$f")"
  case $f in
  closeall | logout) [ "$tf" = 0 ] || fail "$f: a lost session or login must not tempfail: $(tail -1 "$d/l-$f")" ;;
  *) [ "$tf" -gt 0 ] || fail "$f: nothing tempfailed, was the fault there? $(tail -1 "$d/l-$f")" ;;
  esac
  wait_health 200
  "$load" -s "unix:$d/milter.sock" -c 4 -n 40 --unique --sample 1 -o "$d/r-$f" --expect-sign 2 > "$d/r-$f.out" ||
    { tail -3 "$d/r-$f.out"; fail "signing did not resume after $f"; }
  $py "$here/verify/dkimpy_verify.py" "$d/zone" "$d/s-$f"/*.eml "$d/r-$f"/*.eml --expect 2 --quiet > "$d/v-$f" ||
    { tail -3 "$d/v-$f"; fail "dkimpy after $f"; }
  echo "$f: $(tail -1 "$d/l-$f")"
  ok
}

for f in closeall logout removed notpresent moved; do
  fault_under_load "$f"
done

# Each loss logged once, each recovery once (not once per message).
[ "$(grep -c "lost (CKR_DEVICE_REMOVED)" "$d/daemon.log")" = 1 ] || fail "log: loss of removed"
[ "$(grep -c "lost (CKR_TOKEN_NOT_PRESENT)" "$d/daemon.log")" = 1 ] || fail "log: loss of notpresent"
[ "$(grep -c "lost (CKR_GENERAL_ERROR)" "$d/daemon.log")" = 1 ] || fail "log: loss of the token directory"
[ "$(grep -c "token 'dkim' recovered" "$d/daemon.log")" = 3 ] || fail "log: recoveries"
grep -q '"token_recoveries":3' "$d/health" || fail "healthz body: $(cat "$d/health")"; ok
# Both exit cleanly (under ASan, LeakSanitizer would make the status non-zero
# after all these C_Finalize / C_Initialize cycles).
kill "$mpid"; wait "$mpid" || fail "dkimhsm-milter exit status $?"; mpid=""
kill "$dpid"; wait "$dpid" || fail "dkimhsmd exit status $?"; dpid=""; ok
echo "$passed passed, 0 failed"
