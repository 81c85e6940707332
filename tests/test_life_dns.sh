#!/bin/sh
# The key lifecycle against a real knotd (lib/with-dns.sh): activate refuses a
# key DNS does not show and accepts it once the record `dns` prints is
# published (created -> published -> active, not forced); rotate creates the
# successor, waits while DNS lacks it, then activates it and retires the old
# key; revoke's empty record, once published, is what DNS serves; provider
# mode prints the customer's CNAME and the provider's TXT record; the audit
# chain verifies.
#
# usage (via lib/with-token.sh and lib/with-dns.sh): test_life_dns.sh BINDIR
set -eu
bin=$1
d=$DKIMHSM_TEST_DIR
passed=0
fail() { echo "FAIL: $*"; exit 1; }
ok() { passed=$((passed + 1)); }
command -v knsupdate >/dev/null || { echo "knsupdate not found (knot-dnsutils)"; exit 77; }

conf=$d/life.conf
{ cat "$DKIMHSM_TEST_CONF"; echo "dns_server = $DKIMHSM_TEST_DNS_SERVER"; } > "$conf"
kc() { "$bin/dkim-keyctl" -c "$conf" "$@"; }
# publish SELECTOR: replaces its TXT record with what `dns --json` prints.
publish() {
  strings=$(kc dns example.com "$1" --json | /usr/bin/python3 -c '
import json, sys
print(" ".join("\"%s\"" % s for s in json.load(sys.stdin)[0]["strings"]))')
  { printf 'server 127.0.0.1 %s\nzone example.com\n' "$DKIMHSM_TEST_DNS_PORT"
    printf 'update delete %s._domainkey.example.com. TXT\n' "$1"
    printf 'update add %s._domainkey.example.com. 60 TXT %s\nsend\n' "$1" "$strings"
  } | knsupdate -y "$DKIMHSM_TEST_TSIG" || fail "knsupdate $1"
}
state() { kc show example.com "$1" | sed -n 's/^state: *\([a-z]*\).*/\1/p'; }

kc create example.com life1 --alg ed25519 >/dev/null
kc activate example.com life1 2>"$d/err" && fail "activated a key DNS does not show"
grep -q "activating life1 of example.com refused: DNS says missing" "$d/err" ||
  fail "refusal names what DNS said: $(cat "$d/err")"
[ "$(state life1)" = created ] || fail "refused activate changed the state"; ok
publish life1
kc activate example.com life1 >/dev/null || fail "activate once published"
[ "$(state life1)" = active ] || fail "not active"
kc audit | grep -q ' seen-in-dns example.com life1 .*created -> published' ||
  fail "audit: seen in DNS"
kc audit | grep -q ' activate example.com life1 .*published -> active$' ||
  fail "audit: unforced activation"; ok

kc rotate example.com > "$d/rot" 2>&1 || fail "rotate step 1: $(cat "$d/rot")"
grep -q '^selector1-ed25519._domainkey.example.com. IN TXT' "$d/rot" || fail "successor record: $(cat "$d/rot")"
kc rotate example.com > "$d/rot" 2>&1 || fail "rotate while waiting: $(cat "$d/rot")"
grep -q 'waiting: DNS does not show selector1-ed25519 yet (missing' "$d/rot" || fail "waiting: $(cat "$d/rot")"
[ "$(state selector1-ed25519)" = created ] && [ "$(state life1)" = active ] || fail "rotate switched early"; ok
publish selector1-ed25519
kc rotate example.com > "$d/rot" 2>&1 || fail "rotate step 2: $(cat "$d/rot")"
grep -q '^selector1-ed25519 of example.com is active; life1 is retiring' "$d/rot" || fail "switch: $(cat "$d/rot")"
[ "$(state selector1-ed25519)" = active ] && [ "$(state life1)" = retiring ] || fail "states after rotation"
kc show example.com life1 | grep -q '^retire at:' || fail "show: retire at"; ok

kc revoke example.com life1 >/dev/null 2>&1 || fail "revoke"
publish life1
kc check example.com life1 > "$d/check" || fail "check of the revoked key: $(cat "$d/check")"
grep -q 'revoked' "$d/check" || fail "DNS serves the revoked form: $(cat "$d/check")"; ok

# Provider mode: the customer's CNAME and our TXT record under the zone.
{ cat "$conf"; echo "delegation_zone = dkim.provider.example"; } > "$d/prov.conf"
"$bin/dkim-keyctl" -c "$d/prov.conf" dns example.com selector1-ed25519 > "$d/prov"
grep -q '^selector1-ed25519._domainkey.example.com. IN CNAME selector1-ed25519-example-com._domainkey.dkim.provider.example.$' "$d/prov" &&
  grep -q '^selector1-ed25519-example-com._domainkey.dkim.provider.example. IN TXT ( "v=DKIM1; k=ed25519; p=' "$d/prov" ||
  fail "provider mode records: $(cat "$d/prov")"; ok

kc audit --verify >/dev/null || fail "audit --verify"; ok
echo "$passed passed, 0 failed"
