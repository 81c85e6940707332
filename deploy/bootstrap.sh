#!/bin/sh
# Installs every Debian 12 package that building, testing and the quickstart need.
# Idempotent: when everything is present it only runs dpkg-query and exits.
set -eu

PKGS="build-essential cmake pkg-config
libssl-dev libp11-kit-dev libsqlite3-dev libevent-dev libmilter-dev libldns-dev
softhsm2 opensc gnutls-bin p11-kit
libengine-pkcs11-openssl openssl
python3 python3-dkim python3-nacl python3-dnspython
libmail-dkim-perl libcrypt-openssl-rsa-perl opendkim
sqlite3
knot knot-dnsutils"

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "bootstrap: need root to install:$missing" >&2; exit 1
  fi
else
  SUDO=""
fi
echo "bootstrap: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# The tests run knotd on their own (tests/lib/with-dns.sh); the system
# service the knot package enables would answer on port 53. Stop it, but
# only when we installed it just now.
case " $missing " in
  *" knot "*)
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now knot.service >/dev/null 2>&1 || true
    fi ;;
esac
