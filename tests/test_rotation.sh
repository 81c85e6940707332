#!/bin/sh
# A whole key rotation by dkimhsmd's lifecycle timer (daemon/lifetimer.c)
# against a real knotd (lib/with-dns.sh), with the milter signing under load
# all along and no human step: the timer creates the successor, publishes it
# by RFC 2136 update (TSIG), activates it once DNS shows it, retires the old
# key, revokes it after retire_after and publishes its empty p=.
#
# Two domains rotate at once: example.com (Ed25519, k0 -> selector1-ed25519 -> ...)
# and customer.example (RSA, whose key generation blocks the daemon's loop
# for a moment). A watcher (verify/dkimpy_dns_verify.py watch) records what
# knotd served, when; every message the load generator wrote is then verified
# by dkimpy with the record knotd served right after the message was signed,
# so a message signed by a key DNS did not publish (yet, or any more) fails.
#
# usage (via lib/with-token.sh and lib/with-dns.sh): test_rotation.sh BINDIR
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
d=$DKIMHSM_TEST_DIR
load=$bin/tests/milterload
py=/usr/bin/python3
vfy="$here/verify/dkimpy_dns_verify.py"
dns=$DKIMHSM_TEST_DNS_SERVER
passed=0
dpid="" mpid="" wpid="" l1="" l2=""
cleanup() {
  for p in $l1 $l2 $mpid $dpid $wpid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
fail() {
  echo "FAIL: $*"
  # Everything but the per-message lines of success.
  for f in daemon milter; do
    [ -f "$d/$f.log" ] && { echo "--- $f.log"; grep -v 'result=ok\|result=signed' "$d/$f.log" | tail -40; }
  done
  exit 1
}
ok() { passed=$((passed + 1)); }
wait_sock() { i=0; while [ ! -S "$1" ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "no socket $1"; sleep 0.1; done; }
field() { sed -n "s/.*RESULT.* $1=\([^ ]*\).*/\1/p" "$2"; }
command -v knsupdate >/dev/null && command -v kdig >/dev/null ||
  { echo "knsupdate/kdig not found (knot-dnsutils)"; exit 77; }
$py -c 'import dkim, dns.query' 2>/dev/null || { echo "python3-dkim / python3-dnspython missing"; exit 77; }

conf=$d/rot.conf
{ cat "$DKIMHSM_TEST_CONF"
  printf 'agent_socket = %s/agent.sock\nmilter_socket = unix:%s/milter.sock\nworkers = 2\n' "$d" "$d"
  printf 'dns_server = %s\ndns_update_server = %s\ntsig_key_file = %s\n' "$dns" "$dns" \
    "$DKIMHSM_TEST_TSIG_FILE"
  printf 'rotate_after = 3s\nretire_after = 3s\n'
} > "$conf"
kc() { "$bin/dkim-keyctl" -c "$conf" "$@"; }
state() { kc show "$1" "$2" | sed -n 's/^state: *\([a-z]*\).*/\1/p'; }
# publish DOMAIN SELECTOR: by hand (knsupdate), as an operator would.
publish() {
  strings=$(kc dns "$1" "$2" --json | $py -c '
import json, sys
print(" ".join("\"%s\"" % s for s in json.load(sys.stdin)[0]["strings"]))')
  { printf 'server 127.0.0.1 %s\nzone %s\n' "$DKIMHSM_TEST_DNS_PORT" "$1"
    printf 'update delete %s._domainkey.%s. TXT\n' "$2" "$1"
    printf 'update add %s._domainkey.%s. 60 TXT %s\nsend\n' "$2" "$1" "$strings"
  } | knsupdate -y "$DKIMHSM_TEST_TSIG" || fail "knsupdate $2 of $1"
}
# wait_for SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
  n=$(($1 * 10)); shift
  while ! "$@"; do n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.1; done
}
in_state() { [ "$(state "$1" "$2")" = "$3" ]; }
served_revoked() {
  kdig @127.0.0.1 -p "$DKIMHSM_TEST_DNS_PORT" +short TXT "$2._domainkey.$1" | grep -q 'p="$'
}

# The keys in service when the daemon starts: published, then activated
# without force (DNS shows them).
kc create example.com k0 --alg ed25519 >/dev/null
kc create customer.example r0 --alg rsa >/dev/null
publish example.com k0
publish customer.example r0
kc activate example.com k0 >/dev/null || fail "activate k0 once published"
kc activate customer.example r0 >/dev/null || fail "activate r0 once published"; ok

names=""
for z in example.com customer.example; do
  for s in k0 r0 selector1 selector2 selector1-ed25519 selector2-ed25519; do
    names="$names $s._domainkey.$z"
  done
done
# shellcheck disable=SC2086
$py "$vfy" watch --server "$dns" --out "$d/watch.log" --interval 10 $names 2> "$d/watch.err" & wpid=$!

DKIMHSM_LIFETIMER_MS=200 "$bin/dkimhsmd" -c "$conf" -f 2>> "$d/daemon.log" & dpid=$!
wait_sock "$d/agent.sock"
"$bin/dkimhsm-milter" -c "$conf" 2> "$d/milter.log" & mpid=$!
wait_sock "$d/milter.sock"

# Load for the whole rotation: k0 signs, selector1-ed25519 takes over, k0 is revoked.
"$load" -s "unix:$d/milter.sock" -c 8 -t 11 --unique --sample 1 -o "$d/ed" --expect-sign 1 \
  > "$d/l1" & l1=$!
"$load" -s "unix:$d/milter.sock" -c 2 -t 11 --unique --sample 1 -o "$d/rsa" --expect-sign 1 \
  --from loadtest@customer.example > "$d/l2" & l2=$!

# The old key keeps verifying (DNS, now) while it is retiring.
wait_for 10 in_state example.com k0 retiring || fail "k0 not retiring: $(state example.com k0)"
[ "$(state example.com selector1-ed25519)" = active ] ||
  fail "selector1-ed25519 not active while k0 retires"
old=$(grep -l 's=k0;' "$d"/ed/*.eml 2>/dev/null | head -1)
[ -n "$old" ] || fail "no message signed by k0"
$py "$vfy" verify --server "$dns" "$old" > "$d/v_retiring" || fail "k0 while retiring: $(cat "$d/v_retiring")"; ok

# After retire_after: revoked by the timer, p= empty published by it.
wait_for 10 in_state example.com k0 revoked || fail "k0 not revoked: $(state example.com k0)"
wait_for 5 served_revoked example.com k0 || fail "DNS does not serve k0 revoked"
$py "$vfy" verify --server "$dns" --expect-revoked "$old" > "$d/v_revoked" ||
  fail "dkimpy on a k0 message after revocation: $(cat "$d/v_revoked")"
grep -q 'FAIL revoked' "$d/v_revoked" || fail "not reported revoked: $(cat "$d/v_revoked")"; ok

wait "$l1" || { tail -2 "$d/l1"; fail "load (example.com)"; }; l1=""
wait "$l2" || { tail -2 "$d/l2"; fail "load (customer.example)"; }; l2=""
kill "$wpid"; wait "$wpid" || true; wpid=""
for l in l1 l2; do
  [ "$(field errors "$d/$l")" = 0 ] && [ "$(field tempfail "$d/$l")" = 0 ] &&
    [ "$(field signed "$d/$l")" = "$(field msgs "$d/$l")" ] || fail "load $l: $(tail -1 "$d/$l")"
done; ok

# Every message verifies with the key knotd served right after it was signed.
for set in ed rsa; do
  find "$d/$set" -name '*.eml' | sort > "$d/$set.list"
  xargs $py "$vfy" verify --server "$dns" --watch-log "$d/watch.log" --expect 1 --quiet \
    < "$d/$set.list" > "$d/v_$set" || { grep -v ' pass$' "$d/v_$set" | head -5; fail "dkimpy ($set)"; }
done
# xargs may split the list: add up the summaries.
total() { awk '/^dkimpy: [0-9]+ of/ { g += $2; n += $4 } END { print g " " n }' "$1"; }
for set in ed rsa; do
  set -- $(total "$d/v_$set")
  [ "$1" = "$2" ] && [ "$2" = "$(wc -l < "$d/$set.list")" ] || fail "$set: $1 of $2 verify"
done
grep -q 's=k0:' "$d/v_ed" && grep -q 's=selector1-ed25519:' "$d/v_ed" || fail "ed: selectors $(tail -1 "$d/v_ed")"
grep -q 's=r0:' "$d/v_rsa" && grep -q 's=selector1:' "$d/v_rsa" || fail "rsa: selectors $(tail -1 "$d/v_rsa")"; ok

# The old selectors stayed published, unchanged, from before the first
# message until revoked (one change: key -> p= empty), and no message was
# signed by them after DNS said revoked.
for old in k0._domainkey.example.com:ed r0._domainkey.customer.example:rsa; do
  $py - "$d/watch.log" "${old%%:*}" "$d/${old##*:}.list" <<'PY' || fail "old selector ${old%%:*} in DNS"
import os, re, sys
log, name, lst = sys.argv[1:]
seq = []
for line in open(log, encoding="ascii"):
    send, _, n, value = line.rstrip("\n").split(" ", 3)
    if n == name and (not seq or seq[-1][1] != value):
        seq.append((float(send), value))
if len(seq) != 2 or not re.search(r"p=$", seq[1][1]) or re.search(r"p=$", seq[0][1]):
    sys.exit(f"{name}: served {[v for _, v in seq]}, want its key, then p= empty")
sel = name.split(".")[0]
last = max(os.stat(p).st_mtime for p in open(lst).read().split()
           if re.search(rb"\bs=" + sel.encode() + rb";", open(p, "rb").read(4096)))
if last >= seq[1][0]:
    sys.exit(f"{name}: a message signed at {last} after DNS showed it revoked at {seq[1][0]}")
print(f"{name}: last signature {seq[1][0] - last:.1f} s before DNS showed it revoked")
PY
done; ok

# The timer's actions, logged and audited.
for pat in 'rotation of example.com: created selector1-ed25519 to replace k0' \
           'published by RFC 2136 update .*selector1-ed25519._domainkey.example.com' \
           'rotation of example.com: selector1-ed25519 is active (seen in DNS), k0 is retiring' \
           'revoked selector k0 of example.com' \
           'published by RFC 2136 update .*k0._domainkey.example.com. IN TXT ( "v=DKIM1; k=ed25519; p=" )' \
           'rotation of customer.example: selector1 is active (seen in DNS), r0 is retiring'; do
  grep -q "timer: $pat" "$d/daemon.log" || fail "daemon log lacks: $pat"
done
created=$(grep -c 'timer: rotation of example.com: created selector1-ed25519 to replace k0' "$d/daemon.log")
[ "$created" = 1 ] || fail "created logged $created times"; ok
kc audit > "$d/audit"
grep ' timer ' "$d/audit" | grep -q 'activate example.com selector1-ed25519' &&
  grep ' timer ' "$d/audit" | grep -q 'revoke example.com k0' ||
  { grep timer "$d/audit" | head; fail "audit: the timer's actions"; }
kc audit --verify >/dev/null || fail "audit --verify"; ok

echo "measured: $(tail -1 "$d/l1" | cut -c1-120)"
echo "measured: $(grep -c 'lifecycle tick took' "$d/daemon.log" || true) ticks over 1 s"
echo "$passed passed, 0 failed"
