#!/bin/sh
# OpenSSL with the libp11 engine (libengine-pkcs11-openssl) signs with the
# same token key as hsm/ and must produce the same RSA signature (PKCS#1 v1.5
# is deterministic). Proves the key URIs we hand out work for other programs.
#
#   with-token.sh -- test_engine_interop.sh HSM_TOOL
#
# The token holds RSA keys only: engine 0.4.12 enumerates no key at all on a
# token that also holds an Ed25519 key (fixed upstream in 0.4.17).
set -eu

tool=$1
dir=$DKIMHSM_TEST_DIR

engine=""
for e in /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so /usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so \
         /usr/lib/engines-3/pkcs11.so; do
  [ -f "$e" ] && { engine=$e; break; }
done
[ -n "$engine" ] || { echo "skip: libengine-pkcs11-openssl is not installed"; exit 77; }

hex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
field() { printf '%s\n' "$1" | sed -n "s/^$2=//p"; }

# Two keys, so the engine must pick the right one by id.
"$tool" gen rsa 2048 decoy "$dir/decoy.der" >/dev/null
out=$("$tool" gen rsa 2048 interop "$dir/pub.der")
id=$(field "$out" id)
uri=$(field "$out" uri)
echo "key: $uri"

printf 'dkimhsm engine interop\r\n' > "$dir/data"
openssl dgst -sha256 -binary -out "$dir/digest" "$dir/data"
ours=$("$tool" sign "$id" "$(hex "$dir/digest")")

cat > "$dir/openssl.cnf" <<CONF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $engine
MODULE_PATH = $DKIMHSM_TEST_MODULE
init = 0
CONF

OPENSSL_CONF=$dir/openssl.cnf openssl pkeyutl -engine pkcs11 -keyform engine \
  -inkey "$uri;pin-value=$DKIMHSM_TEST_PIN" -sign -pkeyopt digest:sha256 \
  -in "$dir/digest" -out "$dir/sig.engine"
theirs=$(hex "$dir/sig.engine")

if [ "$ours" != "$theirs" ]; then
  echo "FAIL: signatures differ"
  echo "  hsm/:   $ours"
  echo "  engine: $theirs"
  exit 1
fi
echo "ok   same signature from hsm/ and the pkcs11 engine (${#ours} hex digits)"

# And it verifies under the public key hsm/ exported (SubjectPublicKeyInfo DER).
openssl pkeyutl -verify -pubin -keyform DER -inkey "$dir/pub.der" -pkeyopt digest:sha256 \
  -in "$dir/digest" -sigfile "$dir/sig.engine"
echo "1 passed, 0 failed"
