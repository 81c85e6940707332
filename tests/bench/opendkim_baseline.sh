#!/bin/sh
# OpenDKIM under milterload: the baseline dkimhsm must beat, and the proof that
# milterload's messages (with the filter's header changes applied) verify.
#
# usage: opendkim_baseline.sh [--ed25519] [--inet PORT] MILTERLOAD [MILTERLOAD OPTIONS...]
#
# Starts /usr/sbin/opendkim in the foreground (Mode s, Domain example.com, a
# fresh key made with openssl) in a temporary directory, runs MILTERLOAD
# against it (default options: -c 64 -t 10 --sample 50 --unique --expect-sign 1),
# then checks every sampled message with tests/verify/dkimpy_verify.py (and the
# first RSA one with Mail::DKIM too). The -s and -o options are supplied here.
# Besides milterload's report it prints OpenDKIM's CPU per message and how busy
# the machine was (the "machine:" line: OpenDKIM, milterload, everything else).
#
# Exit status: 0 when milterload succeeded and every sampled message verifies,
# 1 otherwise, 77 when opendkim, openssl or dkimpy is not installed.
set -eu

alg=rsa
target=unix
port=
while [ $# -gt 0 ]; do
  case "$1" in
    --ed25519) alg=ed25519; shift ;;
    --inet) target=inet; port=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { sed -n 's/^# \(usage: .*\)/\1/p' "$0" >&2; exit 2; }
milterload=$1; shift
[ $# -gt 0 ] || set -- -c 64 -t 10 --sample 50 --unique --expect-sign 1

here=$(cd "$(dirname "$0")" && pwd)
verify_dir=$here/../verify
opendkim=${OPENDKIM:-/usr/sbin/opendkim}  # OPENDKIM=... to try another build
for need in "$opendkim" /usr/bin/openssl /usr/bin/python3; do
  [ -x "$need" ] || { echo "SKIP: $need is not installed"; exit 77; }
done
/usr/bin/python3 -c 'import dkim' 2>/dev/null || { echo "SKIP: python3-dkim is not installed"; exit 77; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/odkbench.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The key, and its DNS record in the zone-file form dkim-keyctl prints.
# RSA: p= is the SubjectPublicKeyInfo DER; Ed25519 (RFC 8463 §4.2): the raw
# 32-byte key, which is the last 32 bytes of its SPKI DER.
selector=bench
if [ "$alg" = rsa ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/key.pem" 2>/dev/null
  p=$(openssl pkey -in "$dir/key.pem" -pubout -outform DER | base64 -w0)
  sigalg=rsa-sha256
else
  openssl genpkey -algorithm ED25519 -out "$dir/key.pem" 2>/dev/null
  p=$(openssl pkey -in "$dir/key.pem" -pubout -outform DER | tail -c 32 | base64 -w0)
  sigalg=ed25519-sha256
fi
chmod 600 "$dir/key.pem"
record="v=DKIM1; k=$alg; p=$p"
printf '%s._domainkey.example.com. IN TXT ( %s )\n' "$selector" \
  "$(printf '%s' "$record" | fold -w 250 | sed 's/.*/"&"/' | tr '\n' ' ')" > "$dir/zone"

if [ "$target" = unix ]; then
  socket="local:$dir/sock" spec="unix:$dir/sock"
else
  socket="inet:$port@127.0.0.1" spec="inet:$port@127.0.0.1"
fi
cat > "$dir/opendkim.conf" <<EOF
Mode                s
Domain              example.com
Selector            $selector
KeyFile             $dir/key.pem
SignatureAlgorithm  $sigalg
Canonicalization    relaxed/simple
Socket              $socket
Syslog              no
Background          no
UMask               077
RequireSafeKeys     false
EOF
# RequireSafeKeys false: OpenDKIM refuses a key anywhere below a directory
# others can write to, and the temporary directory is below /tmp.

"$opendkim" -f -x "$dir/opendkim.conf" > "$dir/opendkim.log" 2>&1 &
pid=$!

# Wait (at most 10 s) for the socket; opendkim may also die on a bad config.
i=0
until { [ "$target" = unix ] && [ -S "$dir/sock" ]; } ||
      { [ "$target" = inet ] && /usr/bin/python3 -c 'import socket,sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; }; do
  if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 100 ]; then
    echo "FAIL: opendkim did not come up:"; cat "$dir/opendkim.log"; exit 1
  fi
  sleep 0.1; i=$((i + 1))
done

# CPU accounting, so the figures come with how busy the machine was: the
# filter's own ticks, and all cores' busy ticks (everything but idle/iowait).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
ticks0=$(cpu_ticks) busy0=$(busy_ticks) wall0=$(date +%s.%N)
echo "opendkim $("$opendkim" -V | sed -n '1s/.*Filter v//p'), $alg key; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

case " $* " in
  *" --sample "*) set -- "$@" -o "$dir/out" ;;
esac
rc=0
"$milterload" -s "$spec" "$@" > "$dir/result" || rc=$?
cat "$dir/result"
ticks1=$(cpu_ticks) busy1=$(busy_ticks) wall1=$(date +%s.%N)
msgs=$(sed -n 's/^RESULT msgs=\([0-9]*\) .*/\1/p' "$dir/result")
mlcpu=$(sed -n 's/^RESULT .* cpu_s=\([0-9.]*\).*/\1/p' "$dir/result")
awk -v t="$((ticks1 - ticks0))" -v b="$((busy1 - busy0))" -v hz="$(getconf CLK_TCK)" \
    -v n="${msgs:-0}" -v ml="${mlcpu:-0}" -v w="$(echo "$wall1 $wall0" | awk '{ print $1 - $2 }')" \
    -v cores="$(nproc)" 'BEGIN {
  printf "opendkim cpu: %.2f s, %.3f ms per message\n", t / hz, n ? 1000 * t / hz / n : 0
  printf "machine: %.2f of %d cores busy over %.1f s: opendkim %.2f, milterload %.2f, others %.2f\n",
         b / hz / w, cores, w, t / hz / w, ml / w, (b / hz - t / hz - ml) / w }'
if [ "$rc" -ne 0 ]; then
  echo "FAIL: milterload exited $rc"; tail -5 "$dir/opendkim.log"; exit 1
fi

# Every sampled message must verify with dkimpy; the first RSA one also with
# Mail::DKIM (Debian 12's has no Ed25519), a verifier written independently.
[ -d "$dir/out" ] || exit 0
pass=0 fail=0
for m in "$dir/out"/*.eml; do
  [ -f "$m" ] || continue
  if /usr/bin/python3 "$verify_dir/dkimpy_verify.py" "$dir/zone" "$m" --expect 1 > "$dir/v" 2>&1; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $(basename "$m"):"; cat "$dir/v"
  fi
done
echo "verified: $pass of $((pass + fail)) sampled messages pass dkimpy"
[ $fail -eq 0 ] && [ $pass -gt 0 ] || exit 1
if [ "$alg" = rsa ] && perl -MMail::DKIM::Verifier -e 1 2>/dev/null; then
  for first in "$dir/out"/*.eml; do break; done
  perl "$verify_dir/maildkim_verify.pl" "$dir/zone" "$first" --expect 1 ||
    { echo "FAIL: Mail::DKIM rejects $(basename "$first")"; exit 1; }
fi
