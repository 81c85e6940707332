#!/bin/sh
# Verify a message's first DKIM-Signature with OpenDKIM (opendkim -t).
#
# usage: opendkim_verify.sh ZONEFILE MESSAGE
#
# Keys come from ZONEFILE (the lines `dkim-keyctl dns` prints) through
# OpenDKIM's TestPublicKeys; no DNS is asked. opendkim -t evaluates only the
# first signature and exits 0 either way, so its verdict line is what counts.
set -eu
zone=$1 msg=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/odkim.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
/usr/bin/python3 - "$zone" > "$tmp/keys" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    m = re.match(r'^(\S+)\s+(?:\d+\s+)?IN\s+TXT\s+(.*)$', line.strip())
    if m:
        print(m.group(1).rstrip("."), "".join(re.findall(r'"([^"]*)"', m.group(2))))
PY
printf 'Mode v\nTestPublicKeys %s\nSyslog no\n' "$tmp/keys" > "$tmp/opendkim.conf"
out=$(opendkim -x "$tmp/opendkim.conf" -t "$msg" 2>&1 || true)
echo "OpenDKIM: ${out#*: }"
case "$out" in
  *"verification ("*") succeeded"*) exit 0 ;;
  *) exit 1 ;;
esac
