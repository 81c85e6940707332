#!/bin/sh
# dkim-keyctl check against a real knotd: keys created on a fresh token are
# missing from DNS (exit 5); once the records `dns --json` prints are
# published by RFC 2136 update (knsupdate, TSIG) they are ok (exit 0); another
# key, p= empty and a revoked key in the state database each give the right
# verdict; --json parses; provider mode (delegation_zone) follows the
# customer's CNAME; an unreachable server is exit 1.
#
# usage (via lib/with-token.sh and lib/with-dns.sh): test_check.sh BINDIR
set -eu
bin=$1
d=$DKIMHSM_TEST_DIR
passed=0
fail() { echo "FAIL: $*"; exit 1; }
ok() { passed=$((passed + 1)); }
command -v knsupdate >/dev/null || { echo "knsupdate not found (knot-dnsutils)"; exit 77; }

conf=$d/check.conf
{ cat "$DKIMHSM_TEST_CONF"; echo "dns_server = $DKIMHSM_TEST_DNS_SERVER"; } > "$conf"
kc() { "$bin/dkim-keyctl" -c "$conf" "$@"; }
# check ARGS: output in $d/out, exit status in $rc
check() { rc=0; kc check "$@" > "$d/out" 2> "$d/err" || rc=$?; }
# nsupd ZONE LINES...: one signed RFC 2136 update
nsupd() {
  zone=$1; shift
  { printf 'server 127.0.0.1 %s\nzone %s\n' "$DKIMHSM_TEST_DNS_PORT" "$zone"
    for l in "$@"; do printf '%s\n' "$l"; done
    printf 'send\n'; } | knsupdate -y "$DKIMHSM_TEST_TSIG" || fail "knsupdate $zone"
}
# txt_of NAME: the quoted strings `dns --json` gives for NAME's record
txt_of() {
  kc dns example.com --json | /usr/bin/python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r["name"] == sys.argv[1]:
        print(" ".join("\"%s\"" % s for s in r["strings"]))' "$1"
}
row() { grep "^$1 " "$d/out" || fail "no row for $1: $(cat "$d/out")"; }

kc create example.com s1 --alg ed25519 >/dev/null
kc create example.com s2 --alg rsa --bits 2048 >/dev/null

# Nothing published yet: missing, exit 5.
check example.com
[ $rc = 5 ] || fail "check before publishing: exit $rc: $(cat "$d/out" "$d/err")"
row s1 | grep -q ' created  *missing  *fix  *no such name (NXDOMAIN) at s1._domainkey.example.com' ||
  fail "s1 missing: $(cat "$d/out")"
row s2 | grep -q 'missing' || fail "s2 missing"
grep -q '2 of 2 selectors of example.com are not as expected' "$d/err" || fail "stderr: $(cat "$d/err")"; ok

# Publish what `dns` prints (s2's 2048-bit key is two strings): ok, exit 0.
nsupd example.com "update add s1._domainkey.example.com. 60 TXT $(txt_of s1._domainkey.example.com.)" \
                  "update add s2._domainkey.example.com. 60 TXT $(txt_of s2._domainkey.example.com.)"
check example.com
[ $rc = 0 ] || fail "check after publishing: exit $rc: $(cat "$d/out" "$d/err")"
row s1 | grep -q ' created  *ok  *ok  *s1._domainkey.example.com$' || fail "s1 ok: $(cat "$d/out")"
row s2 | grep -q ' ok  *ok ' || fail "s2 ok"; ok
check example.com s2
[ $rc = 0 ] && [ "$(grep -c . "$d/out")" = 2 ] || fail "check one selector: $(cat "$d/out")"; ok

# Another key at s2: mismatch, exit 5.
other=$(openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 2>/dev/null |
        openssl pkey -pubout -outform DER | base64 -w0)
nsupd example.com "update delete s2._domainkey.example.com. TXT" \
                  "update add s2._domainkey.example.com. 60 TXT \"v=DKIM1; k=rsa; p=$other\""
check example.com
[ $rc = 5 ] || fail "another key: exit $rc"
row s2 | grep -q ' mismatch  *fix  *p= is another key' || fail "s2 mismatch: $(cat "$d/out")"
row s1 | grep -q ' ok  *ok ' || fail "s1 still ok"; ok
# k= says ed25519 where we hold RSA.
nsupd example.com "update delete s2._domainkey.example.com. TXT" \
                  "update add s2._domainkey.example.com. 60 TXT $(txt_of s1._domainkey.example.com.)"
check example.com s2
[ $rc = 5 ] && row s2 | grep -q 'k=ed25519, expected k=rsa' || fail "wrong k=: $(cat "$d/out")"; ok

# p= empty for a key we still use: revoked in DNS, to fix.
nsupd example.com "update delete s1._domainkey.example.com. TXT" \
                  "update add s1._domainkey.example.com. 60 TXT \"v=DKIM1; k=ed25519; p=\""
check example.com s1
[ $rc = 5 ] && row s1 | grep -q ' created  *revoked  *fix ' || fail "revoked in DNS only: $(cat "$d/out")"; ok
# Revoked in the state database too (no revoke command yet): as expected.
s1key=$(sqlite3 "$DKIMHSM_TEST_DIR/state/state.db" "SELECT public_key FROM selectors WHERE selector = 's1'")
sqlite3 "$DKIMHSM_TEST_DIR/state/state.db" "UPDATE selectors SET state = 'revoked' WHERE selector = 's1'"
check example.com s1
[ $rc = 0 ] && row s1 | grep -q ' revoked  *revoked  *ok ' || fail "revoked as expected: $(cat "$d/out")"; ok
# A revoked key whose record still carries the key is to fix.
nsupd example.com "update delete s1._domainkey.example.com. TXT" \
                  "update add s1._domainkey.example.com. 60 TXT \"v=DKIM1; k=ed25519; p=$s1key\""
check example.com s1
[ $rc = 5 ] && row s1 | grep -q ' revoked  *ok  *fix  *the key is still published' ||
  fail "revoked but published: $(cat "$d/out")"; ok

# --json parses and says the same.
check example.com --json
[ $rc = 5 ] || fail "--json exit $rc"
/usr/bin/python3 - "$d/out" <<'PY' || fail "--json: $(cat "$d/out")"
import json, sys
rows = {r["selector"]: r for r in json.load(open(sys.argv[1]))}
assert set(rows) == {"s1", "s2"}, rows
s1, s2 = rows["s1"], rows["s2"]
assert s1["state"] == "revoked" and s1["dns"] == "ok" and s1["expected"] == "revoked", s1
assert s1["result"] == "fix" and "still published" in s1["reason"], s1
assert s2["dns"] == "mismatch" and s2["result"] == "fix" and s2["reason"] == "k=ed25519, expected k=rsa", s2
assert s2["name"] == "s2._domainkey.example.com" and s2["record"].startswith("v=DKIM1; k=ed25519; p="), s2
assert s2["final_name"] == "s2._domainkey.example.com", s2
PY
ok

# Provider mode: the customer's name must CNAME into the provider's zone.
pconf=$d/provider.conf
{ cat "$conf"; echo "delegation_zone = dkim.provider.example"; } > "$pconf"
kcp() { "$bin/dkim-keyctl" -c "$pconf" "$@"; }
checkp() { rc=0; kcp check "$@" > "$d/out" 2> "$d/err" || rc=$?; }
kcp create customer.example s1 --alg ed25519 >/dev/null
kcp create customer.example s9 --alg ed25519 >/dev/null
val=$(kcp dns customer.example s9 --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["value"])')
checkp customer.example s9
[ $rc = 5 ] && row s9 | grep -q 'no CNAME at s9._domainkey.customer.example (expected one to s9-customer-example._domainkey.dkim.provider.example)' ||
  fail "provider: no CNAME: $(cat "$d/out")"; ok
nsupd dkim.provider.example "update add s9-customer-example._domainkey.dkim.provider.example. 60 TXT \"$val\""
nsupd customer.example "update add s9._domainkey.customer.example. 60 CNAME s9-customer-example._domainkey.dkim.provider.example."
checkp customer.example s9
[ $rc = 0 ] && row s9 | grep -q ' ok  *ok  *s9-customer-example._domainkey.dkim.provider.example$' ||
  fail "provider ok: $(cat "$d/out")"; ok
# The zone file's s1 CNAME points at s1-customer-example (the right name),
# but the provider record there holds the fixture key, not ours.
checkp customer.example s1
[ $rc = 5 ] && row s1 | grep -q 'p= is another key' || fail "provider: other key: $(cat "$d/out")"; ok
nsupd customer.example "update delete s9._domainkey.customer.example. CNAME" \
                       "update add s9._domainkey.customer.example. 60 CNAME s1-other-example._domainkey.dkim.provider.example."
checkp customer.example s9
[ $rc = 5 ] && row s9 | grep -q 'CNAME points to s1-other-example._domainkey.dkim.provider.example, expected s9-customer-example._domainkey.dkim.provider.example' ||
  fail "provider: wrong CNAME: $(cat "$d/out")"; ok

# A name reused after its key was destroyed: one row, the live key's.
kc create reuse.example r1 --alg ed25519 >/dev/null
kc revoke reuse.example r1 --destroy >/dev/null
kc create reuse.example r1 --alg ed25519 >/dev/null
check reuse.example
[ "$(grep -c '^r1 ' "$d/out")" = 1 ] && row r1 | grep -q ' created ' ||
  fail "reused name: $(cat "$d/out")"; ok

# DNS unreachable: exit 1, naming the server; usage errors exit 2.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{ cat "$DKIMHSM_TEST_CONF"; echo "dns_server = 127.0.0.1:$port"; } > "$d/down.conf"
rc=0; "$bin/dkim-keyctl" -c "$d/down.conf" check example.com > "$d/out" 2> "$d/err" || rc=$?
[ $rc = 1 ] && grep -q "127.0.0.1:$port" "$d/err" && row s1 | grep -q ' error  *error ' ||
  fail "server down: exit $rc: $(cat "$d/out" "$d/err")"; ok
rc=0; kc check > /dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "check without a domain: exit $rc"
rc=0; kc check nosuch.example > /dev/null 2> "$d/err" || rc=$?
[ $rc = 1 ] && grep -q 'no selectors' "$d/err" || fail "unknown domain: exit $rc $(cat "$d/err")"; ok

echo "$passed passed, 0 failed"
