#!/bin/sh
# RFC 8463 Appendix A through the programs: the standard's own keys are
# imported into a fresh token, `dkim-keyctl dns` must print the very p= values
# of A.2, and dkimhsm-sign's output for the A.1 message, with the example's t=
# and h=, must carry the example's bh= and verify with dkimpy and Mail::DKIM.
# (Byte-for-byte b= reproduction from the example's own field is test_kat.)
#
# usage (via lib/with-token.sh): test_rfc8463_sign.sh BINDIR TESTDATA SHARED_TESTDATA
set -eu
bin=$1
td=$2/rfc8463
here=$(cd "$(dirname "$0")" && pwd)
d=$DKIMHSM_TEST_DIR
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$td/rsa.pem" ] || { echo "skipped: $td not present"; exit 77; }
kc() { "$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" "$@"; }

kc import football.example.com brisbane --pem "$td/ed25519.pem" >/dev/null
kc import football.example.com test --pem "$td/rsa.pem" >/dev/null 2>"$d/warn"
kc activate football.example.com brisbane --force >/dev/null
kc activate football.example.com test --force >/dev/null
grep -q "1024" "$d/warn" || fail "no warning for the 1024-bit RSA key"
kc dns football.example.com > "$d/zone"

# Our records must publish exactly the keys of RFC 8463 A.2.
/usr/bin/python3 - "$td/dns.zone" "$d/zone" <<'PY' || fail "records differ from RFC 8463 A.2"
import re, sys
def records(path):
    text = re.sub(r'^;[^\n]*', '', open(path).read(), flags=re.M)
    out = {}
    for name, body in re.findall(r'(\S+)\s+IN\s+TXT\s+\(([^)]*)\)', text):
        value = "".join(re.findall(r'"([^"]*)"', body))
        out[name.lower()] = dict(t.strip().split("=", 1) for t in value.split(";") if t.strip())
    return out
rfc, ours = records(sys.argv[1]), records(sys.argv[2])
ok = True
for name, tags in rfc.items():
    if ours.get(name, {}).get("p") != tags["p"] or ours[name].get("k") != tags["k"]:
        print("mismatch for", name, ours.get(name), tags); ok = False
sys.exit(0 if ok else 1)
PY

"$bin/dkimhsm-sign" -c "$DKIMHSM_TEST_CONF" -d football.example.com --alg both \
  --canon relaxed/relaxed --timestamp 1528637909 \
  --headers from:to:subject:date:message-id:from:subject:date \
  < "$td/message-unsigned.eml" > "$d/signed.eml" 2>"$d/err" || { cat "$d/err"; fail "sign"; }
n=$(grep -c 'bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=' "$d/signed.eml" || true)
[ "$n" = 2 ] || { cat "$d/signed.eml"; fail "expected the RFC's bh= in both signatures, saw $n"; }
grep -q 't=1528637909' "$d/signed.eml" || fail "t= not the fixed timestamp"
/usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$d/signed.eml" --expect 2 ||
  fail "dkimpy"
perl "$here/verify/maildkim_verify.pl" "$d/zone" "$d/signed.eml" --expect 2 || fail "Mail::DKIM"
echo "4 passed, 0 failed"
