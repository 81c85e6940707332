#!/bin/sh
# Runs a command with a fresh SoftHSM token of its own, in a temporary
# directory that is removed afterwards. Never touches a system token.
#
#   with-token.sh [--no-token] [--reset-on-fork] -- COMMAND [ARGS...]
#
# Exports for COMMAND:
#   SOFTHSM2_CONF          the temp softhsm2.conf
#   DKIMHSM_TEST_DIR       the temp directory (COMMAND may write here)
#   DKIMHSM_TEST_MODULE    path of libsofthsm2.so
#   DKIMHSM_TEST_TOKEN     pkcs11:token=dkim
#   DKIMHSM_TEST_PIN_FILE  file holding the user PIN, mode 600
#   DKIMHSM_TEST_PIN       the user PIN itself (for tools like pkcs11-tool)
#   DKIMHSM_TEST_CONF      a dkimhsm.conf using all of the above
set -eu

init_token=1
reset_on_fork=false
while [ $# -gt 0 ]; do
  case "$1" in
    --no-token) init_token=0; shift ;;
    --reset-on-fork) reset_on_fork=true; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: with-token.sh [--no-token] [--reset-on-fork] -- COMMAND..." >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/dkimhsm-test.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
mkdir -p "$dir/tokens" "$dir/state"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
library.reset_on_fork = $reset_on_fork
CONF

module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
  [ -f "$m" ] && { module=$m; break; }
done
[ -n "$module" ] || { echo "with-token.sh: libsofthsm2.so not found (run deploy/bootstrap.sh)" >&2; exit 1; }

SOFTHSM2_CONF="$dir/softhsm2.conf"
export SOFTHSM2_CONF
DKIMHSM_TEST_DIR=$dir
DKIMHSM_TEST_MODULE=$module
DKIMHSM_TEST_TOKEN="pkcs11:token=dkim"
DKIMHSM_TEST_PIN=1234
DKIMHSM_TEST_PIN_FILE="$dir/pin"
DKIMHSM_TEST_CONF="$dir/dkimhsm.conf"
export DKIMHSM_TEST_DIR DKIMHSM_TEST_MODULE DKIMHSM_TEST_TOKEN DKIMHSM_TEST_PIN \
       DKIMHSM_TEST_PIN_FILE DKIMHSM_TEST_CONF

(umask 077; printf '%s\n' "$DKIMHSM_TEST_PIN" > "$DKIMHSM_TEST_PIN_FILE")
if [ "$init_token" = 1 ]; then
  softhsm2-util --init-token --free --label dkim --so-pin 5678 --pin "$DKIMHSM_TEST_PIN" >/dev/null
fi
cat > "$DKIMHSM_TEST_CONF" <<CONF
pkcs11_module = $module
token = $DKIMHSM_TEST_TOKEN
pin_file = $DKIMHSM_TEST_PIN_FILE
state_dir = $dir/state
publish_wait = 0
CONF

# Not exec: the trap must run to remove the token directory.
set +e
"$@"
rc=$?
exit $rc
