#!/bin/sh
# Bad input gets a clear error naming the problem and a non-zero exit, and
# dkimhsm-sign writes nothing to stdout: no unsigned message slips through.
#
# usage (via lib/with-token.sh): test_bad_input.sh BINDIR
set -eu
bin=$1
d=$DKIMHSM_TEST_DIR
passed=0
fail() { echo "FAIL: $*"; exit 1; }

# expect NAME STATUS PATTERN -- COMMAND... (stdin from $input)
expect() {
  name=$1 want_status=$2 pattern=$3
  shift 4
  set +e
  "$@" < "$input" > "$d/out" 2> "$d/err"
  status=$?
  set -e
  [ "$status" = "$want_status" ] || { cat "$d/err"; fail "$name: exit $status, expected $want_status"; }
  grep -q -- "$pattern" "$d/err" || { cat "$d/err"; fail "$name: stderr lacks '$pattern'"; }
  [ ! -s "$d/out" ] || fail "$name: something was written to stdout"
  passed=$((passed + 1))
}

good="$d/good.eml"
printf 'From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n' > "$good"
input=$good
"$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" create example.com s1 --alg ed25519 >/dev/null
"$bin/dkim-keyctl" -c "$DKIMHSM_TEST_CONF" activate example.com s1 --force >/dev/null

# Configuration.
cp "$DKIMHSM_TEST_CONF" "$d/unknown.conf"; echo "sign_everything = yes" >> "$d/unknown.conf"
line=$(wc -l < "$d/unknown.conf")
expect "unknown key" 2 "unknown.conf:$line: sign_everything: unknown key" -- "$bin/dkimhsm-sign" -c "$d/unknown.conf"
cp "$DKIMHSM_TEST_CONF" "$d/badval.conf"; echo "canonicalization = loose/simple" >> "$d/badval.conf"
expect "bad value" 2 "badval.conf:$line: canonicalization" -- "$bin/dkimhsm-sign" -c "$d/badval.conf"
expect "missing config" 2 "nonexistent.conf" -- "$bin/dkimhsm-sign" -c "$d/nonexistent.conf"

# Token and PIN.
sed "s|^pin_file = .*|pin_file = $d/wrongpin|" "$DKIMHSM_TEST_CONF" > "$d/wrongpin.conf"
(umask 077; echo 9999 > "$d/wrongpin")
expect "wrong PIN" 3 "CKR_PIN_INCORRECT" -- "$bin/dkimhsm-sign" -c "$d/wrongpin.conf"
sed "s|^token = .*|token = pkcs11:token=nosuchtoken|" "$DKIMHSM_TEST_CONF" > "$d/notoken.conf"
expect "missing token" 1 "nosuchtoken" -- "$bin/dkimhsm-sign" -c "$d/notoken.conf"
sed "s|^pin_file = .*|pin_file = $d/openpin|" "$DKIMHSM_TEST_CONF" > "$d/openpin.conf"
printf '%s\n' "$DKIMHSM_TEST_PIN" > "$d/openpin"; chmod 644 "$d/openpin"
expect "PIN file 644" 1 "mode 0644" -- "$bin/dkimhsm-sign" -c "$d/openpin.conf"
expect "keyctl PIN file 644" 1 "mode 0644" -- "$bin/dkim-keyctl" -c "$d/openpin.conf" create example.com s9

# Messages that must not be signed.
C="-c $DKIMHSM_TEST_CONF"
input="$d/nofrom.eml"; printf 'To: b@example.net\r\nSubject: x\r\n\r\nbody\r\n' > "$input"
expect "no From" 4 "From" -- "$bin/dkimhsm-sign" $C -d example.com
input="$d/twofrom.eml"; printf 'From: a@example.com\r\nFrom: c@example.com\r\n\r\nbody\r\n' > "$input"
expect "two From" 4 "From" -- "$bin/dkimhsm-sign" $C
input="$d/notheader.eml"; printf 'From: a@example.com\r\nthis is not a header\r\n\r\nbody\r\n' > "$input"
expect "not a header line" 4 "line 2" -- "$bin/dkimhsm-sign" $C
input="$d/barecr.eml"; printf 'From: a@example.com\r\n\r\nbody\rwith bare CR\r\n' > "$input"
expect "bare CR" 4 "CR" -- "$bin/dkimhsm-sign" $C
input=$good
expect "unknown domain" 1 "example.org" -- "$bin/dkimhsm-sign" $C -d example.org
expect "rsa asked, none there" 1 "rsa" -- "$bin/dkimhsm-sign" $C --alg rsa
expect "bad canon option" 2 "canon" -- "$bin/dkimhsm-sign" $C --canon relaxed/loose

# keyctl refusals.
expect "RSA 512" 1 "RFC 8301" -- "$bin/dkim-keyctl" $C create example.com small --bits 512
expect "duplicate selector" 1 "already exists" -- "$bin/dkim-keyctl" $C create example.com s1
expect "bad selector" 1 "selector" -- "$bin/dkim-keyctl" $C create example.com 'bad sel!'

echo "$passed passed, 0 failed"
