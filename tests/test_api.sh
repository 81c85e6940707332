#!/bin/sh
# The management API (docs/API.md) end to end: dkimhsmd with api_token_file on
# a fresh token, DNS from a knotd of its own (lib/with-dns.sh). The token file
# follows the PIN-file rule; 401 / 403 without / with a wrong token, and the
# token never reaches the log; PUT creates selector1 and selector2, a second
# PUT is 409; activation is refused while DNS lacks the record (409 naming
# what DNS said) and forced activation signs at once (dkimpy verifies);
# rotate switches to selector2 once DNS shows it; revoke stops signing;
# illegal jumps, unknown names, bad JSON, wrong methods and big bodies get
# their statuses; DELETE revokes (and destroys) every key; the audit log
# names the token's actor and verifies.
#
# usage (via lib/with-token.sh and lib/with-dns.sh): test_api.sh BINDIR
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
kc() { "$bin/dkim-keyctl" -c "$d/a.conf" "$@"; }
command -v knsupdate >/dev/null || { echo "knsupdate not found (knot-dnsutils)"; exit 77; }

port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=$($py -c 'import secrets; print(secrets.token_hex(24))')
actor="api:$(printf '%s' "$token" | sha256sum | cut -c1-8)"
(umask 077; printf '%s\n' "$token" > "$d/api.token")
cp "$DKIMHSM_TEST_CONF" "$d/a.conf"
cat >> "$d/a.conf" <<CONF
agent_socket = $d/agent.sock
http_listen = 127.0.0.1:$port
workers = 2
dns_server = $DKIMHSM_TEST_DNS_SERVER
api_token_file = $d/api.token
CONF

# api METHOD PATH [BODY] [TOKEN]: prints the status, then the body.
cat > "$d/api.py" <<'PY'
import sys, urllib.request
method, url, body, token = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
if token:
    req.add_header("Authorization", token)
try:
    r = urllib.request.urlopen(req, timeout=30)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
    for h in ("WWW-Authenticate", "Allow"):
        if e.headers.get(h):
            print("%s: %s" % (h, e.headers.get(h)))
PY
api() { $py "$d/api.py" "$1" "http://127.0.0.1:$port/api/v1$2" "${3:-}" "${4-Bearer $token}" > "$d/out"; }
status() { head -1 "$d/out"; }
expect() { [ "$(status)" = "$1" ] || fail "$2: expected $1, got $(cat "$d/out")"; }
has() { grep -q -- "$1" "$d/out" || fail "$2: no '$1' in $(cat "$d/out")"; }
field() { sed -n 2p "$d/out" | $py -c "import json, sys; v = json.load(sys.stdin); r = ($1); print(r)"; }
start() {
  "$bin/dkimhsmd" -c "$d/a.conf" -f 2> "$d/daemon.log" &
  pid=$!
  i=0
  while [ ! -S "$d/agent.sock" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || fail "daemon did not create its socket"
    kill -0 "$pid" 2>/dev/null || fail "daemon exited"
    sleep 0.1
  done
}
# publish DOMAIN SELECTOR: its TXT record as `dkim-keyctl dns --json` prints it.
publish() {
  strings=$(kc dns "$1" "$2" --json | $py -c '
import json, sys
print(" ".join("\"%s\"" % s for s in json.load(sys.stdin)[0]["strings"]))')
  { printf 'server 127.0.0.1 %s\nzone %s\n' "$DKIMHSM_TEST_DNS_PORT" "$1"
    printf 'update delete %s._domainkey.%s. TXT\n' "$2" "$1"
    printf 'update add %s._domainkey.%s. 60 TXT %s\nsend\n' "$2" "$1" "$strings"
  } | knsupdate -y "$DKIMHSM_TEST_TSIG" || fail "knsupdate $2"
}
sign() { "$bin/dkimhsm-sign" -c "$d/a.conf" --agent "$d/agent.sock" --alg rsa < "$1"; }

# The token file follows the PIN-file rule, and a short token is refused.
chmod 644 "$d/api.token"
"$bin/dkimhsmd" -c "$d/a.conf" -f 2> "$d/refused.log" && fail "started with a world-readable token"
grep -q 'api_token_file.*lets group or others read it' "$d/refused.log" ||
  fail "unclear refusal: $(cat "$d/refused.log")"
chmod 600 "$d/api.token"
sed "s|^api_token_file = .*|api_token_file = $d/short.token|" "$d/a.conf" > "$d/short.conf"
(umask 077; echo short > "$d/short.token")
"$bin/dkimhsmd" -c "$d/short.conf" -f 2> "$d/refused.log" && fail "started with a short token"
grep -q 'token shorter than 16 bytes' "$d/refused.log" || fail "short: $(cat "$d/refused.log")"
[ ! -S "$d/agent.sock" ] || fail "refused start left its socket"; ok

start
api GET /domains "" ""
expect 401 "no token"
has 'WWW-Authenticate: Bearer' "challenge"
api GET /domains "" "Basic dXNlcjpwYXNz"
expect 401 "not a bearer token"
api GET /domains "" "Bearer wrong-token-wrong-token"
expect 403 "wrong token"
api PUT /domains/example.com/keys "" "Bearer ${token}x"
expect 403 "wrong token on a change"
[ "$(kc list | wc -l)" = 1 ] || fail "a refused request changed something"; ok

api PUT /domains/example.com/keys
expect 201 "PUT keys"
[ "$(field '" ".join(k["selector"] + ":" + k["state"] for k in v["keys"])')" = \
  "selector1:created selector2:created" ] || fail "PUT keys: $(cat "$d/out")"
[ "$(field '" ".join(r["name"] for r in v["records"])')" = \
  "selector1._domainkey.example.com. selector2._domainkey.example.com." ] ||
  fail "PUT records: $(cat "$d/out")"
has '"value":"v=DKIM1; k=rsa; p=MII' "record value"
api PUT /domains/example.com/keys '{"alg":"ed25519"}'
expect 409 "second PUT"
has 'already has keys (selector1 created, selector2 created)' "second PUT message"
api GET /domains
expect 200 "GET domains"
[ "$(field '[(x["domain"], x["keys"]) for x in v["domains"]]')" = "[('example.com', 2)]" ] ||
  fail "GET domains: $(cat "$d/out")"
api GET /domains/EXAMPLE.com./keys
expect 200 "GET keys"
[ "$(field '" ".join(k["selector"] + ":" + k["state"] + ":" + k["algorithm"] for k in v["keys"])')" = \
  "selector1:created:rsa-sha256 selector2:created:rsa-sha256" ] || fail "GET keys: $(cat "$d/out")"
has '"fingerprint":"[0-9a-f]\{64\}"' "fingerprint"; ok

# Not in DNS: refused with what DNS said; forced: signs at once.
api POST /domains/example.com/keys/selector1/activate
expect 409 "activate without DNS"
has 'activating selector1 of example.com refused: DNS says missing' "activate refusal"
printf 'From: a@example.com\r\nTo: b@example.net\r\nSubject: api\r\n\r\nhi\r\n' > "$d/m.eml"
sign "$d/m.eml" > /dev/null 2>&1 && fail "signed with a created key"
api POST /domains/example.com/keys/selector1/activate '{"force":true}'
expect 200 "forced activate"
has '"forced":true' "forced"
kc dns example.com > "$d/zone"
sign "$d/m.eml" > "$d/m.signed" || fail "sign right after activation"
$py "$here/verify/dkimpy_verify.py" "$d/zone" "$d/m.signed" --expect 1 >/dev/null ||
  fail "dkimpy after API activation"
grep -q 's=selector1' "$d/m.signed" || fail "not signed by selector1"; ok

# Rotation: selector2 waits for DNS, then takes over; selector1 retires.
api POST /domains/example.com/rotate
expect 200 "rotate waiting"
[ "$(field 'v["step"], v["selector"], v["replaces"], v["dns"]["status"]')" = \
  "('waiting', 'selector2', 'selector1', 'missing')" ] || fail "rotate waiting: $(cat "$d/out")"
publish example.com selector2
api POST /domains/example.com/rotate '{"alg":"rsa"}'
expect 200 "rotate switch"
has '"step":"switched"' "switched"
kc dns example.com > "$d/zone"
sign "$d/m.eml" > "$d/m.signed" || fail "sign after rotation"
grep -q 's=selector2' "$d/m.signed" || fail "not signed by selector2 after rotation"
$py "$here/verify/dkimpy_verify.py" "$d/zone" "$d/m.signed" --expect 1 >/dev/null ||
  fail "dkimpy after rotation"
api GET /domains/example.com/keys/selector1
expect 200 "GET key"
[ "$(field 'v["state"], [h["to"] for h in v["history"]], v["token"]["never_extractable"]')" = \
  "('retiring', ['created', 'active', 'retiring'], True)" ] || fail "GET key: $(cat "$d/out")"
has '"retire_at":"' "retire_at"
has '"records":\[{"name":"selector1._domainkey.example.com."' "GET key record"; ok

# Revoked: out of use at once; illegal jumps name the states.
api POST /domains/example.com/keys/selector2/revoke
expect 200 "revoke"
has '"value":"v=DKIM1; k=rsa; p="' "revoked record"
sign "$d/m.eml" > /dev/null 2>&1 && fail "example.com still signed after revocation"
api POST /domains/example.com/keys/selector2/activate '{"force":true}'
expect 409 "illegal jump"
has 'selector selector2 of example.com is revoked; allowed next: destroyed (asked for active)' \
  "illegal jump message"; ok

# Unknown names, bad input, wrong methods, big bodies.
api GET /domains/nowhere.example/keys
expect 404 "unknown domain"
api POST /domains/nowhere.example/keys/selector1/activate
expect 404 "unknown key"
api GET /domains/bad..name/keys
expect 400 "bad name"
api POST /domains/example.com/keys/selector1/revoke '{destroy:true}'
expect 400 "bad JSON"
has 'not valid JSON' "bad JSON message"
api POST /domains/example.com/keys/selector1/revoke '{"destroy":"yes"}'
expect 400 "wrong type"
api POST /domains/example.com/keys/selector1/revoke '{"destroy":true} x'
expect 400 "trailing bytes"
api POST /domains/example.com/keys/selector1/revoke '{"destroy":true,"later":1}'
expect 400 "unknown member"
api GET /domains/example.com/keys/selector1
[ "$(field 'v["state"]')" = retiring ] || fail "refused requests changed selector1"
api DELETE /domains
expect 405 "wrong method"
has 'Allow: GET' "Allow header"
api GET /nothing
expect 404 "unknown route"
api PUT /domains/example.org/keys "{\"alg\":\"$($py -c 'print("x" * 5000)')\"}"
expect 413 "big body"; ok

# DELETE: revokes every key; with destroy=1 also destroys them, and the
# names can be taken again.
api PUT /domains/example.org/keys '{"alg":"ed25519"}'
expect 201 "PUT example.org"
api DELETE /domains/example.org/keys
expect 200 "DELETE"
[ "$(field 'v["revoked"], v["destroyed"]')" = "(['selector1-ed25519', 'selector2-ed25519'], [])" ] ||
  fail "DELETE: $(cat "$d/out")"
api DELETE '/domains/example.org/keys?destroy=1'
expect 200 "DELETE destroy"
[ "$(field 'v["revoked"], v["destroyed"]')" = "([], ['selector1-ed25519', 'selector2-ed25519'])" ] ||
  fail "DELETE destroy: $(cat "$d/out")"
api DELETE '/domains/example.org/keys?really=1'
expect 400 "unknown query"
api PUT /domains/example.org/keys '{"alg":"ed25519"}'
expect 201 "PUT after destroy"
api GET /domains/example.org/keys
[ "$(field '" ".join(sorted(k["selector"] + ":" + k["state"] for k in v["keys"]))')" = \
  "selector1-ed25519:created selector1-ed25519:destroyed selector2-ed25519:created selector2-ed25519:destroyed" ] ||
  fail "keys after re-PUT: $(cat "$d/out")"; ok

# Provider mode after SIGHUP: the customer's CNAME comes with the record.
echo "delegation_zone = dkim.provider.example" >> "$d/a.conf"
kill -HUP "$pid"
i=0
until grep -q "reloaded" "$d/daemon.log"; do
  i=$((i + 1)); [ $i -lt 50 ] || fail "no reload"; sleep 0.1
done
api GET /domains/example.org/keys/selector1-ed25519
expect 200 "GET key, provider mode"
[ "$(field 'v["records"][0]["cname"]["name"], v["records"][0]["name"]')" = \
  "('selector1-ed25519._domainkey.example.org.', 'selector1-ed25519-example-org._domainkey.dkim.provider.example.')" ] ||
  fail "provider mode: $(cat "$d/out")"; ok

# The audit log names the token by its hash, never the token itself.
kc audit | grep -q " $actor activate example.com selector1 " || fail "audit: no $actor"
kc audit | grep -q " $actor create example.org selector2-ed25519 " || fail "audit: create by $actor"
kc audit --verify >/dev/null || fail "audit --verify"
grep -q "api: $actor" "$d/daemon.log" || fail "requests not logged"
if grep -qF -e "$token" -e dXNlcjpwYXNz -e wrong-token-wrong "$d/daemon.log"; then
  fail "the token or the Authorization header reached the log"
fi; ok

kill -TERM "$pid"
wait "$pid" || fail "daemon exit status $?"
pid=""
echo "$passed passed, 0 failed"
