#!/bin/sh
# The main job end to end on the embedded default - a SoftHSM token and a
# SQLite state database under ./var (or the directory given):
#   install packages, build, create the token and config, generate an RSA-2048
#   and an Ed25519 key for example.com inside the token, print their DNS
#   records, sign a sample message with both, and verify it independently.
# Running it again reuses the token, config and keys.
#
#   ./deploy/quickstart.sh [DIR]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$top/var}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
domain=example.com

step() { printf '\n== %s\n' "$*"; }

step "Packages (deploy/bootstrap.sh)"
"$top/deploy/bootstrap.sh"

step "Build"
cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$top/build" -j "$(nproc)" >/dev/null
bin=$top/build
echo "built $bin/dkim-keyctl and $bin/dkimhsm-sign"

step "SoftHSM token 'dkim' in $dir/tokens"
module=$(ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so 2>/dev/null | head -n 1)
mkdir -p "$dir/tokens"
if [ ! -f "$dir/softhsm2.conf" ]; then
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$dir" > "$dir/softhsm2.conf"
fi
SOFTHSM2_CONF=$dir/softhsm2.conf
export SOFTHSM2_CONF
if ! softhsm2-util --show-slots 2>/dev/null | grep -q 'Label: *dkim *$'; then
  (umask 077
   od -An -N8 -tx1 /dev/urandom | tr -d ' \n' > "$dir/pin"
   od -An -N8 -tx1 /dev/urandom | tr -d ' \n' > "$dir/so-pin")
  softhsm2-util --init-token --free --label dkim \
    --pin "$(cat "$dir/pin")" --so-pin "$(cat "$dir/so-pin")" >/dev/null
  echo "token created; user PIN in $dir/pin (mode 600)"
else
  echo "token already there"
fi

step "Configuration $dir/dkimhsm.conf"
if [ ! -f "$dir/dkimhsm.conf" ]; then
  sed "s|@MODULE@|$module|" "$top/deploy/dkimhsm.conf.example" > "$dir/dkimhsm.conf"
  echo "written (commented example)"
else
  echo "already there"
fi
DKIMHSM_CONF=$dir/dkimhsm.conf
export DKIMHSM_CONF

step "Keys for $domain, generated inside the token"
have=$("$bin/dkim-keyctl" list)
echo "$have" | grep -q "^$domain  *rsa1 " || "$bin/dkim-keyctl" create $domain rsa1 --alg rsa --bits 2048 >/dev/null
echo "$have" | grep -q "^$domain  *ed1 " || "$bin/dkim-keyctl" create $domain ed1 --alg ed25519 >/dev/null
"$bin/dkim-keyctl" list

step "DNS records to publish (dkim-keyctl dns $domain)"
"$bin/dkim-keyctl" dns $domain | tee "$dir/$domain.zone"

step "Activate the keys (dkim-keyctl activate $domain SELECTOR)"
# In production: publish the records above, then `dkim-keyctl activate`,
# which refuses until DNS serves them (`dkim-keyctl check` shows what DNS
# says). This demo has no DNS zone, so it activates with --force; the audit
# log (`dkim-keyctl audit`) records that it was forced.
for sel in rsa1 ed1; do
  "$bin/dkim-keyctl" show $domain $sel | grep -q "^state: *active" ||
    "$bin/dkim-keyctl" activate $domain $sel --force
done

step "Sign deploy/sample.eml with both keys -> $dir/signed.eml"
"$bin/dkimhsm-sign" --alg both < "$top/deploy/sample.eml" > "$dir/signed.eml"
grep -A3 '^DKIM-Signature' "$dir/signed.eml" | head -n 12

step "Verify: dkimpy, Mail::DKIM and OpenDKIM, DNS answered from the records above"
perl -pe 's/\r?\n?\z/\r\n/' "$dir/signed.eml" > "$dir/signed.crlf.eml"
if /usr/bin/python3 "$top/tests/verify/dkimpy_verify.py" "$dir/$domain.zone" "$dir/signed.crlf.eml" --expect 2 &&
   perl "$top/tests/verify/maildkim_verify.pl" "$dir/$domain.zone" "$dir/signed.crlf.eml" --expect 2 &&
   "$top/tests/verify/opendkim_verify.sh" "$dir/$domain.zone" "$dir/signed.crlf.eml"; then
  printf '\nVERDICT: PASS - each signature verifies with two independent verifiers\n'
  printf '(Ed25519: dkimpy and OpenDKIM; RSA: dkimpy and Mail::DKIM).\n'
else
  printf '\nVERDICT: FAIL - see the lines above.\n'
  exit 1
fi
cat <<EOT

To use these tools yourself:
  export SOFTHSM2_CONF=$dir/softhsm2.conf DKIMHSM_CONF=$dir/dkimhsm.conf
  $bin/dkimhsm-sign < message.eml > signed.eml
EOT
