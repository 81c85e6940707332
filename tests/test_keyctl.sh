#!/bin/sh
# dkim-keyctl: create (every size and algorithm), list and list --json, dns in
# zone-file form (strings of at most 255 bytes) and --json, import from PEM;
# the key lifecycle: activate (refused without DNS, --force audited), show,
# revoke (p= empty), revoke --destroy (token object gone), rotate (never
# activates an unseen key), audit and audit --verify (an edit is caught).
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

# --- The key lifecycle (lifecycle/, audit/). DNS is a closed local port, so
# nothing is ever "seen": activation needs --force, and rotation never
# activates its new key.
cp "$DKIMHSM_TEST_CONF" "$d/life.conf"
echo "dns_server = 127.0.0.1:9" >> "$d/life.conf"
kl() { "$bin/dkim-keyctl" -c "$d/life.conf" "$@"; }
py() { /usr/bin/python3 "$@"; }
kl create life.example s1 --alg ed25519 >/dev/null
kl activate life.example s1 2>"$d/act.err" && fail "activate without DNS confirmation accepted"
kl show life.example s1 | grep -q '^state: *created' || fail "refused activate changed the state"; ok
kl activate life.example s1 --force >/dev/null || fail "activate --force: $(cat "$d/act.err")"
kl show life.example s1 > "$d/show"
grep -q '^state: *active (since ' "$d/show" || { cat "$d/show"; fail "show: state"; }
grep -q 'sensitive=yes extractable=no always-sensitive=yes never-extractable=yes local=yes' "$d/show" ||
  { cat "$d/show"; fail "show: custody from the token"; }
grep -q '^history:' "$d/show" && grep -q 'created   -> active .*uid:' "$d/show" ||
  { cat "$d/show"; fail "show: history"; }; ok
# The fingerprint is SHA-256 over the p= bytes.
fp=$(kl dns life.example s1 --json | py -c 'import json,sys,base64,hashlib
v=json.load(sys.stdin)[0]["value"]; print(hashlib.sha256(base64.b64decode(v.split("p=")[1])).hexdigest())')
grep -q "^fingerprint: *SHA256:$fp\$" "$d/show" || { cat "$d/show"; fail "fingerprint is not SHA-256 of p="; }; ok
kl audit > "$d/audit"
grep -q '^[0-9]* .* activate life.example s1 .*created -> active; forced (--force)' "$d/audit" ||
  { cat "$d/audit"; fail "audit does not say the activation was forced"; }; ok
kl list | grep -q '^life.example  *s1  *ed25519-sha256 .* active ' || fail "list shows the state"; ok

# An illegal jump names the current state and the allowed ones.
kl destroy life.example s1 2>"$d/err" && fail "destroy of an active key accepted"
grep -q "selector s1 of life.example is active; allowed next: retiring, revoked" "$d/err" ||
  fail "illegal jump message: $(cat "$d/err")"; ok

# Revoke: DNS output becomes p= empty; the token key stays until destroyed.
kid=$(kl list --json | py -c 'import json,sys
print([r["key_id"] for r in json.load(sys.stdin) if r["domain"]=="life.example"][0])')
kl revoke life.example s1 > "$d/rev" 2>/dev/null || fail "revoke"
grep -q '^s1._domainkey.life.example. IN TXT ( "v=DKIM1; k=ed25519; p=" )$' "$d/rev" ||
  fail "revoke prints the empty record: $(cat "$d/rev")"
kl create life.example s2 --alg ed25519 >/dev/null
kl dns life.example > "$d/zone"
[ "$(grep -c 'IN TXT' "$d/zone")" = 2 ] && grep -q '^s1._domainkey.life.example. .*p=" )$' "$d/zone" &&
  grep -q '^s2._domainkey.life.example. .*p=[A-Za-z0-9+/]\{40,\}' "$d/zone" || { cat "$d/zone"; fail "dns after revoke"; }
kl dns life.example --json | py -c 'import json,sys
r={x["selector"]: x for x in json.load(sys.stdin)}
assert r["s1"]["value"].endswith("p=") and r["s1"]["state"]=="revoked", r
assert len(r["s2"]["value"]) > 40 and r["s2"]["state"]=="created", r' || fail "dns --json after revoke"; ok
p11 --list-objects --type privkey | grep -q "$kid" || fail "revoke (no --destroy) removed the token key"; ok
kl revoke life.example s1 --destroy >/dev/null 2>&1 || fail "revoke --destroy"
kl show life.example s1 > "$d/show"
grep -q '^state: *destroyed' "$d/show" && grep -q '^token: *key destroyed' "$d/show" ||
  { cat "$d/show"; fail "show after destroy"; }
p11 --list-objects | grep -q "$kid" && fail "token object still there after --destroy"; ok
kl audit --json | py -c 'import json,sys
a=json.load(sys.stdin)
d=[x for x in a if x["event"]=="destroy"][0]
assert d["selector"]=="s1" and "public_key=" in d["detail"] and len(d["fingerprint"])==64, d
assert [x["event"] for x in a if x["selector"]=="s1"]==["create","activate","revoke","destroy"], a' ||
  fail "audit of revoke --destroy"; ok

# Rotation: the successor is created and its record printed; with DNS
# silent it is never activated.
kl create rot.example old --alg ed25519 >/dev/null
kl activate rot.example old --force >/dev/null
kl rotate rot.example > "$d/rot" 2>"$d/rot.err" || fail "rotate: $(cat "$d/rot.err")"
grep -q '^selector1-ed25519._domainkey.rot.example. IN TXT ( "v=DKIM1; k=ed25519; p=' "$d/rot" ||
  fail "rotate prints the successor's record: $(cat "$d/rot")"
kl rotate rot.example >/dev/null 2>&1 || true
kl show rot.example selector1-ed25519 | grep -q '^state: *created' || fail "rotate activated an unseen key"
kl show rot.example old | grep -q '^state: *active' || fail "rotate retired the old key too early"; ok

# The audit chain verifies, and an edited entry is caught.
# A refused PIN is a key event: audited (and the chain stays whole).
(umask 077; echo 0000 > "$d/wrong.pin")
sed "s|^pin_file = .*|pin_file = $d/wrong.pin|" "$d/life.conf" > "$d/wrongpin.conf"
rc=0; "$bin/dkim-keyctl" -c "$d/wrongpin.conf" create life.example s9 >/dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "wrong PIN: exit $rc"
kl audit | grep -q ' login-failure .*CKR_PIN_INCORRECT' || fail "login failure not audited"; ok

kl audit --verify > "$d/verify" || fail "audit --verify on an untouched log: $(cat "$d/verify")"
grep -q '^audit log ok: [0-9]* entries' "$d/verify" || fail "audit --verify output"; ok
py - "$d/state/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("DROP TRIGGER audit_log_no_update;"
                 "UPDATE audit_log SET actor = 'uid:0(mallory)' WHERE seq = 2;")
db.commit()
PY
kl audit --verify > /dev/null 2>"$d/verify.err" && fail "audit --verify missed an edited entry"
grep -q "entry 2 was edited" "$d/verify.err" || fail "verify names the entry: $(cat "$d/verify.err")"; ok

echo "$passed passed, 0 failed"
