#!/bin/sh
# End to end on a fresh token: dkim-keyctl creates an RSA and an Ed25519 key,
# dkimhsm-sign signs sample messages with every canonicalization pair and both
# algorithms, and two independent verifiers (dkimpy, Perl Mail::DKIM) check
# every signature against the records `dkim-keyctl dns` prints. A tampered
# copy must fail, so the verifiers are shown to be judging, not waving through.
#
# usage (via lib/with-token.sh): test_sign_e2e.sh BINDIR
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
d=$DKIMHSM_TEST_DIR
kc() { "$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" "$@"; }
sign() { "$bin/dkimhsm-sign" -c "$DKIMHSM_TEST_CONF" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }

kc create example.com rsa2048 --alg rsa >/dev/null
kc create example.com ed1 --alg ed25519 >/dev/null
kc dns example.com > "$d/zone"
grep -q '^rsa2048._domainkey.example.com. IN TXT' "$d/zone" || fail "no rsa record: $(cat "$d/zone")"
grep -q 'k=ed25519' "$d/zone" || fail "no ed25519 record"

pass=0
check() { # check LABEL FILE NSIGS
  /usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$2" --expect "$3" > "$d/v.out" 2>&1 ||
    { cat "$d/v.out"; fail "$1: dkimpy"; }
  perl "$here/verify/maildkim_verify.pl" "$d/zone" "$2" --expect "$3" > "$d/v.out" 2>&1 ||
    { cat "$d/v.out"; fail "$1: Mail::DKIM"; }
  pass=$((pass + 1))
}

for msg in "$here"/data/messages/*.eml; do
  name=$(basename "$msg" .eml)
  for canon in simple/simple simple/relaxed relaxed/simple relaxed/relaxed; do
    out="$d/$name.$(echo $canon | tr / -).eml"
    sign --alg both --canon "$canon" < "$msg" > "$out" || fail "$name $canon: sign"
    # The MTA transmits CRLF: verify that form (LF input gets LF output).
    sed 's/\r*$/\r/' "$out" > "$out.crlf"
    check "$name $canon" "$out.crlf" 2
  done
done

# Each algorithm alone, selector chosen explicitly.
sign -s rsa2048 < "$here/data/messages/plain-crlf.eml" > "$d/rsa-only.eml"
check "rsa only" "$d/rsa-only.eml" 1
sign --alg ed25519 < "$here/data/messages/plain-crlf.eml" > "$d/ed-only.eml"
/usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$d/ed-only.eml" --expect 1 >/dev/null ||
  fail "ed25519 only: dkimpy"
[ "$(grep -c '^DKIM-Signature:' "$d/ed-only.eml")" = 1 ] || fail "ed25519 only: signature count"

# Tampering must be caught by both verifiers.
sed 's/the report is attached/the report is NOT attached/' "$d/plain-crlf.relaxed-relaxed.eml.crlf" > "$d/tampered.eml"
if /usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$d/tampered.eml" >/dev/null 2>&1; then
  fail "dkimpy accepted a tampered body"
fi
if perl "$here/verify/maildkim_verify.pl" "$d/zone" "$d/tampered.eml" >/dev/null 2>&1; then
  fail "Mail::DKIM accepted a tampered body"
fi
# An added From: (over-signed) must break the signature.
{ printf 'From: mallory@evil.example\r\n'; cat "$d/plain-crlf.relaxed-relaxed.eml.crlf"; } > "$d/addfrom.eml"
if /usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$d/addfrom.eml" >/dev/null 2>&1; then
  fail "dkimpy accepted a message with an added From:"
fi

echo "$pass passed, 0 failed"
