#!/bin/sh
# End to end on a fresh token: dkim-keyctl creates an RSA and an Ed25519 key,
# dkimhsm-sign signs sample messages with every canonicalization pair and both
# algorithms, and two independent verifiers (dkimpy, Perl Mail::DKIM) check
# every signature against the records `dkim-keyctl dns` prints; OpenDKIM judges
# single-signature messages of each algorithm. A tampered
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
# No DNS in this test: the keys sign once activated by force.
kc activate example.com rsa2048 --force >/dev/null
kc activate example.com ed1 --force >/dev/null
kc dns example.com > "$d/zone"
grep -q '^rsa2048._domainkey.example.com. IN TXT' "$d/zone" || fail "no rsa record: $(cat "$d/zone")"
grep -q 'k=ed25519' "$d/zone" || fail "no ed25519 record"

crlf() { perl -pe 's/\r?\n?\z/\r\n/'; }

pass=0
check() { # check LABEL FILE NSIGS
  /usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$2" --expect "$3" > "$d/v.out" 2>&1 ||
    { cat "$d/v.out"; fail "$1: dkimpy"; }
  perl "$here/verify/maildkim_verify.pl" "$d/zone" "$2" --expect "$3" > "$d/v.out" 2>&1 ||
    { cat "$d/v.out"; fail "$1: Mail::DKIM"; }
  # RFC 6376 §3.7 folding as promised: no line of our fields over 78 columns.
  awk '/^DKIM-Signature:/ {f=1} f && !/^[ \t]/ && !/^DKIM-Signature:/ {f=0}
       f { sub(/\r$/, ""); if (length($0) > 78) { print "long line: " $0; bad=1 } }
       END { exit bad }' "$2" || fail "$1: signature line over 78 columns"
  pass=$((pass + 1))
}

for msg in "$here"/data/messages/*.eml; do
  name=$(basename "$msg" .eml)
  for canon in simple/simple simple/relaxed relaxed/simple relaxed/relaxed; do
    out="$d/$name.$(echo $canon | tr / -).eml"
    sign --alg both --canon "$canon" < "$msg" > "$out" || fail "$name $canon: sign"
    # The MTA transmits CRLF, with a final CRLF: verify that form (LF input
    # gets LF output; a missing final line end stays missing in the output).
    crlf < "$out" > "$out.crlf"
    check "$name $canon" "$out.crlf" 2
  done
done

# Each algorithm alone, selector chosen explicitly; OpenDKIM, which judges
# only a message's first signature, is the second verifier for Ed25519 (Debian
# 12's Mail::DKIM has no ed25519-sha256) and the third for RSA.
odkim() { "$here/verify/opendkim_verify.sh" "$d/zone" "$1" > "$d/v.out" 2>&1 || { cat "$d/v.out"; fail "$2: OpenDKIM"; }; }
for msg in "$here"/data/messages/*.eml; do
  name=$(basename "$msg" .eml)
  for canon in simple/simple relaxed/relaxed simple/relaxed relaxed/simple; do
    sign -s rsa2048 --canon "$canon" < "$msg" | crlf > "$d/rsa-only.eml"
    check "$name rsa only $canon" "$d/rsa-only.eml" 1
    odkim "$d/rsa-only.eml" "$name rsa only $canon"
    sign --alg ed25519 --canon "$canon" < "$msg" | crlf > "$d/ed-only.eml"
    /usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$d/ed-only.eml" --expect 1 >/dev/null ||
      fail "$name ed25519 only $canon: dkimpy"
    odkim "$d/ed-only.eml" "$name ed25519 only $canon"
    pass=$((pass + 1))
  done
done

# Tampering must be caught by both verifiers.
sed 's/the report is attached/the report is NOT attached/' "$d/plain-crlf.relaxed-relaxed.eml.crlf" > "$d/tampered.eml"
if /usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$d/tampered.eml" >/dev/null 2>&1; then
  fail "dkimpy accepted a tampered body"
fi
if perl "$here/verify/maildkim_verify.pl" "$d/zone" "$d/tampered.eml" >/dev/null 2>&1; then
  fail "Mail::DKIM accepted a tampered body"
fi
if "$here/verify/opendkim_verify.sh" "$d/zone" "$d/tampered.eml" >/dev/null 2>&1; then
  fail "OpenDKIM accepted a tampered body"
fi
# An added From: (over-signed) must break the signature.
{ printf 'From: mallory@evil.example\r\n'; cat "$d/plain-crlf.relaxed-relaxed.eml.crlf"; } > "$d/addfrom.eml"
if /usr/bin/python3 "$here/verify/dkimpy_verify.py" "$d/zone" "$d/addfrom.eml" >/dev/null 2>&1; then
  fail "dkimpy accepted a message with an added From:"
fi

echo "$pass passed, 0 failed"
