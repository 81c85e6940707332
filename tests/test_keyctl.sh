#!/bin/sh
# dkim-keyctl: create (every size and algorithm), list and list --json, dns in
# zone-file form (strings of at most 255 bytes) and --json, import from PEM.
# The published p= must be the token's own public key, read independently
# with pkcs11-tool, and a refused create leaves no object in the token.
#
# usage (via lib/with-token.sh): test_keyctl.sh BINDIR
set -eu
bin=$1
d=$DKIMHSM_TEST_DIR
passed=0
fail() { echo "FAIL: $*"; exit 1; }
ok() { passed=$((passed + 1)); }
kc() { "$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" "$@"; }
p11() { pkcs11-tool --module "$DKIMHSM_TEST_MODULE" --token-label dkim --login \
          --pin "$DKIMHSM_TEST_PIN" "$@" 2>/dev/null; }

kc create Example.COM. s2048 > "$d/create.out"
grep -q '^s2048._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; p=' "$d/create.out" ||
  fail "create prints the record: $(cat "$d/create.out")"; ok
kc create example.com s4096 --bits 4096 >/dev/null
kc create example.com s3072 --alg rsa --bits 3072 >/dev/null
kc create example.com sed --alg ed25519 >/dev/null
kc create example.com s1536 --bits 1536 >/dev/null 2>"$d/warn"
grep -q "warning" "$d/warn" || fail "no warning for a 1536-bit key"; ok

kc list > "$d/list"
grep -q '^example.com  *s4096  *rsa-sha256  *4096 .* created  *generated-in-token' "$d/list" ||
  { cat "$d/list"; fail "list table"; }; ok
kc list --json > "$d/list.json"
/usr/bin/python3 - "$d/list.json" <<'PY' || fail "list --json"
import json, sys
rows = {r["selector"]: r for r in json.load(open(sys.argv[1]))}
assert set(rows) == {"s2048", "s4096", "s3072", "sed", "s1536"}, rows
assert rows["s4096"]["bits"] == 4096 and rows["s4096"]["algorithm"] == "rsa-sha256"
assert rows["sed"]["algorithm"] == "ed25519-sha256" and rows["sed"]["bits"] == 256
assert all(r["custody"] == "generated" and r["state"] == "created" for r in rows.values())
assert all(r["domain"] == "example.com" and r["created"].endswith("Z") for r in rows.values())
PY
ok

# Zone form: a 4096-bit key needs several strings, none longer than 255.
kc dns example.com s4096 > "$d/z4096"
/usr/bin/python3 - "$d/z4096" <<'PY' || fail "dns string split"
import re, sys
line = open(sys.argv[1]).read()
strings = re.findall(r'"([^"]*)"', line)
assert len(strings) >= 3 and all(len(s) <= 255 for s in strings), strings
assert "".join(strings).startswith("v=DKIM1; k=rsa; p=MIIC")
PY
ok
kc dns example.com --json > "$d/dns.json"
/usr/bin/python3 - "$d/dns.json" <<'PY' || fail "dns --json"
import json, sys
recs = json.load(open(sys.argv[1]))
assert len(recs) == 5
for r in recs:
    assert r["type"] == "TXT" and r["name"].endswith("._domainkey.example.com.")
    assert "".join(r["strings"]) == r["value"] and all(len(s) <= 255 for s in r["strings"])
PY
ok

# The published RSA and Ed25519 keys are the token's own (read with pkcs11-tool).
id=$(kc list --json | /usr/bin/python3 -c 'import json,sys; print([r["key_id"] for r in json.load(sys.stdin) if r["selector"]=="s2048"][0])')
p11 --read-object --type pubkey --id "$id" -o "$d/pub.der" || fail "pkcs11-tool read pubkey"
want=$(openssl pkey -pubin -inform DER -in "$d/pub.der" -outform DER | base64 -w0)
kc dns example.com s2048 | tr -d '" ' | grep -q "p=$want)" || fail "p= differs from the token's key"; ok
edid=$(kc list --json | /usr/bin/python3 -c 'import json,sys; print([r["key_id"] for r in json.load(sys.stdin) if r["selector"]=="sed"][0])')
p11 --list-objects --type pubkey > "$d/objs"
grep -q "$edid" "$d/objs" || fail "ed25519 key id not in token"; ok

# Import a PEM key (migration from a file-based signer).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/old.pem" 2>/dev/null
kc import example.org legacy --pem "$d/old.pem" >/dev/null
kc list --json | grep -q '"selector":"legacy","algorithm":"rsa-sha256","bits":2048,.*"custody":"imported"' ||
  fail "import custody"
want=$(openssl pkey -in "$d/old.pem" -pubout -outform DER | base64 -w0)
kc dns example.org legacy | tr -d '" ' | grep -q "p=$want)" || fail "imported p= differs"; ok
openssl genpkey -algorithm ED25519 -out "$d/ed.pem"
kc import example.org legacy-ed --pem "$d/ed.pem" | grep -q 'k=ed25519' || fail "ed25519 import"; ok

# Refusals change nothing in the token.
before=$(p11 --list-objects | grep -c '^Private Key Object' || true)
kc create example.com s2048 2>/dev/null && fail "duplicate accepted"
kc create example.com tiny --bits 512 2>/dev/null && fail "512 bits accepted"
kc import example.org broken --pem /etc/hostname 2>/dev/null && fail "non-PEM import accepted"
after=$(p11 --list-objects | grep -c '^Private Key Object' || true)
[ "$before" = "$after" ] || fail "refused commands left token objects ($before -> $after)"; ok
kc dns example.org broken 2>/dev/null && fail "refused import left a record"; ok

echo "$passed passed, 0 failed"
