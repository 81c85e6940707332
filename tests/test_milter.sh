#!/bin/sh
# dkimhsm-milter over the real milter protocol (our load generator plays the
# MTA), with dkimhsmd on a fresh token behind it. Every signature produced is
# verified by dkimpy against its own message. Everything started is stopped
# by PID.
#
# usage (via lib/with-token.sh): test_milter.sh BINDIR
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
d=$DKIMHSM_TEST_DIR
load=$bin/tests/milterload
py=/usr/bin/python3
passed=0
dpid="" mpid="" m2pid="" lpid=""
cleanup() {
  for p in $lpid $m2pid $mpid $dpid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; for f in daemon milter; do [ -f "$d/$f.log" ] && tail -5 "$d/$f.log"; done; exit 1; }
ok() { passed=$((passed + 1)); }
wait_sock() { i=0; while [ ! -S "$1" ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "no socket $1"; sleep 0.1; done; }
field() { sed -n "s/.*RESULT.* $1=\([^ ]*\).*/\1/p" "$2"; }

cp "$DKIMHSM_TEST_CONF" "$d/m.conf"
printf 'agent_socket = %s/agent.sock\nmilter_socket = unix:%s/milter.sock\nworkers = 2\n' \
  "$d" "$d" >> "$d/m.conf"
sed "s|milter\\.sock|milter2.sock|" "$d/m.conf" > "$d/accept.conf"
echo "on_failure = accept" >> "$d/accept.conf"
"$bin/dkim-keyctl" -c "$d/m.conf" create example.com rsa1 >/dev/null
"$bin/dkim-keyctl" -c "$d/m.conf" create example.com ed1 --alg ed25519 >/dev/null
"$bin/dkim-keyctl" -c "$d/m.conf" activate example.com rsa1 --force >/dev/null
"$bin/dkim-keyctl" -c "$d/m.conf" activate example.com ed1 --force >/dev/null
"$bin/dkim-keyctl" -c "$d/m.conf" dns example.com > "$d/zone"

start_daemon() { "$bin/dkimhsmd" -c "$d/m.conf" -f 2>> "$d/daemon.log" & dpid=$!; wait_sock "$d/agent.sock"; }
stop_daemon() { kill "$dpid"; wait "$dpid" || true; dpid=""; }
start_daemon
"$bin/dkimhsm-milter" -c "$d/m.conf" 2> "$d/milter.log" & mpid=$!
wait_sock "$d/milter.sock"

# 200 different messages in flight over 16 connections: each verifies
# against its own content, so no result crossed between requests.
"$load" -s "unix:$d/milter.sock" -c 16 -n 200 --unique --sample 1 -o "$d/s1" --expect-sign 2 \
  > "$d/l1" || { cat "$d/l1"; fail "200 messages over 16 connections"; }
$py "$here/verify/dkimpy_verify.py" "$d/zone" "$d"/s1/*.eml --expect 2 --quiet > "$d/v1" ||
  { tail -5 "$d/v1"; fail "dkimpy on the 200 messages"; }
grep -q "200 of 200 messages verify" "$d/v1" || fail "not all 200 verified: $(tail -1 "$d/v1")"; ok
grep -q "result=signed" "$d/milter.log" || fail "no per-message log line"; ok

# Nothing signs for this domain: the message passes unsigned.
"$load" -s "unix:$d/milter.sock" -n 5 --from someone@unknown.test --expect-sign 0 > "$d/l2" ||
  { cat "$d/l2"; fail "unknown domain"; }
[ "$(field signed "$d/l2")" = 0 ] && [ "$(field accepted "$d/l2")" = 5 ] || fail "unknown domain: $(tail -1 "$d/l2")"; ok

# dkimhsmd down: tempfail (default policy), or accepted unsigned with
# on_failure = accept; back up: the milter reconnects by itself.
stop_daemon
"$load" -s "unix:$d/milter.sock" -n 10 > "$d/l3" || true
[ "$(field tempfail "$d/l3")" = 10 ] || fail "daemon down: $(tail -1 "$d/l3")"; ok
"$bin/dkimhsm-milter" -c "$d/accept.conf" 2> "$d/milter2.log" & m2pid=$!
wait_sock "$d/milter2.sock"
"$load" -s "unix:$d/milter2.sock" -n 10 --expect-sign 0 > "$d/l4" || { cat "$d/l4"; fail "on_failure=accept"; }
[ "$(field accepted "$d/l4")" = 10 ] || fail "on_failure=accept: $(tail -1 "$d/l4")"; ok
start_daemon
"$load" -s "unix:$d/milter.sock" -n 20 --expect-sign 2 > "$d/l5" || { cat "$d/l5"; fail "after restart"; }; ok

# dkimhsmd restarted under load: every message is signed (and verifies) or
# tempfailed; none is broken, none errors.
"$load" -s "unix:$d/milter.sock" -c 8 -t 4 --unique --sample 1 -o "$d/s6" > "$d/l6" & lpid=$!
sleep 1; stop_daemon; sleep 0.5; start_daemon
wait "$lpid" || true; lpid=""
msgs=$(field msgs "$d/l6"); signed=$(field signed "$d/l6"); tf=$(field tempfail "$d/l6")
[ "$(field errors "$d/l6")" = 0 ] && [ $((signed + tf)) = "$msgs" ] && [ "$tf" -gt 0 ] && [ "$signed" -gt 0 ] ||
  fail "restart under load: $(tail -1 "$d/l6")"
$py "$here/verify/dkimpy_verify.py" "$d/zone" "$d"/s6/*.eml --expect 2 --quiet > "$d/v6" ||
  { tail -3 "$d/v6"; fail "dkimpy after restart under load"; }; ok

# SIGHUP adding a key to the signing table under load: no message fails,
# and mail from the newly mapped domain is signed with the new key.
"$load" -s "unix:$d/milter.sock" -c 8 -t 3 --expect-sign 2 > "$d/l7" & lpid=$!
sleep 1
"$bin/dkim-keyctl" -c "$d/m.conf" create example.org hup1 --alg ed25519 >/dev/null
"$bin/dkim-keyctl" -c "$d/m.conf" activate example.org hup1 --force >/dev/null
"$bin/dkim-keyctl" -c "$d/m.conf" dns example.org > "$d/zone.org"
echo "signing_table = news.example.net=example.org" >> "$d/m.conf"
kill -HUP "$dpid"
wait "$lpid" || { cat "$d/l7"; fail "messages failed during SIGHUP"; }; lpid=""
[ "$(field tempfail "$d/l7")" = 0 ] || fail "SIGHUP under load: $(tail -1 "$d/l7")"
"$load" -s "unix:$d/milter.sock" -n 3 --from a@news.example.net --sample 1 -o "$d/s8" \
  --expect-sign 1 > "$d/l8" || { cat "$d/l8"; fail "signing table entry after SIGHUP"; }
grep -q "d=example.org" "$d"/s8/*.eml || fail "news.example.net not signed with example.org's key"
$py "$here/verify/dkimpy_verify.py" "$d/zone.org" "$d"/s8/*.eml --expect 1 --quiet >/dev/null ||
  fail "dkimpy on the new key"; ok

# SIGTERM to the milter while a message waits for dkimhsmd (stopped with
# SIGSTOP): the milter waits for that message, which still gets its
# signatures, and exits cleanly (0; under ASan, with nothing freed in use).
kill -STOP "$dpid"
"$load" -s "unix:$d/milter.sock" -n 1 --sample 1 -o "$d/s9" --expect-sign 2 > "$d/l9" & lpid=$!
# The message reaches the end of data in milliseconds; then the milter's
# request sits unanswered in the stopped daemon's socket.
sleep 2
kill -TERM "$mpid"
sleep 0.5
kill -0 "$mpid" 2>/dev/null || fail "the milter exited with a message still waiting for dkimhsmd"
kill -CONT "$dpid"
wait "$lpid" || { cat "$d/l9"; fail "the message in flight at SIGTERM"; }; lpid=""
wait "$mpid" || fail "milter exit status after SIGTERM: $?"; mpid=""
$py "$here/verify/dkimpy_verify.py" "$d/zone" "$d"/s9/*.eml --expect 2 --quiet >/dev/null ||
  fail "dkimpy on the message signed across the milter's SIGTERM"; ok

echo "$passed passed, 0 failed"
