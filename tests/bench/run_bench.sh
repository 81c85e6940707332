#!/bin/sh
# The issue-3 benchmark in one run: dkimhsmd + dkimhsm-milter under milterload,
# against the raw token ceiling and OpenDKIM measured in the same run, plus
# body hashing and the milter's memory against message size. It prints
# figures and ratios; it is a program, not a test (no timing is asserted).
#
# usage: run_bench.sh BINDIR [--seconds S] [--conns N] [--rounds R] [--size BYTES]
#                            [--workers W] [--no-opendkim]
#
# BINDIR is a build directory (use a Release build without sanitizers:
# cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release). It runs on a fresh
# SoftHSM token of its own (tests/lib/with-token.sh) with one RSA-2048 key
# (rsa.bench.test) and one Ed25519 key (ed.bench.test). Per key type and
# round: the raw C_Sign ceiling with as many threads as dkimhsmd has token
# workers, measured half before and half after milterload runs against
# dkimhsm-milter; the ratio of each round is printed and the median is the
# figure. Defaults: 64 connections, 10 s, 3
# rounds, ~4 KB messages, workers = CPU count (dkimhsmd's own default).
# Every sampled message is verified with dkimpy.
#
# Exit status: 0 when every run signed and every sample verified, 1 otherwise.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${DKIMHSM_BENCH_INNER:-}" ]; then
  DKIMHSM_BENCH_INNER=1 exec "$here/../lib/with-token.sh" -- "$0" "$@"
fi
[ $# -ge 1 ] || { sed -n 's/^# \(usage: .*\)/\1/p' "$0" >&2; exit 2; }
bin=$(cd "$1" && pwd); shift
secs=10 conns=64 rounds=3 size=4096 workers=$(nproc) opendkim=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) secs=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --no-opendkim) opendkim=0; shift ;;
    *) echo "run_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

d=$DKIMHSM_TEST_DIR
py=/usr/bin/python3
load=$bin/tests/milterload
ceiling=$bin/tests/token_ceiling
dpid="" mpid=""
cleanup() {
  for p in $mpid $dpid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "FAIL: $*"; for f in daemon milter; do [ -f "$d/$f.log" ] && tail -5 "$d/$f.log"; done; exit 1; }
wait_sock() { i=0; while [ ! -S "$1" ]; do i=$((i + 1)); [ $i -lt 100 ] || fail "no socket $1"; sleep 0.1; done; }
field() { sed -n "s/^RESULT.* $1=\([^ ]*\).*/\1/p" "$2"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# ---- the machine and the setup
echo "== machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
echo "   $(uname -sr), load before: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
cp "$DKIMHSM_TEST_CONF" "$d/b.conf"
cat >> "$d/b.conf" <<CONF
agent_socket = $d/agent.sock
milter_socket = unix:$d/milter.sock
workers = $workers
CONF
kc() { "$bin/dkim-keyctl" -c "$d/b.conf" "$@" >/dev/null; }
kc create rsa.bench.test rsa1 --alg rsa
kc create ed.bench.test ed1 --alg ed25519
kc activate rsa.bench.test rsa1 --force
kc activate ed.bench.test ed1 --force
{ "$bin/dkim-keyctl" -c "$d/b.conf" dns rsa.bench.test
  "$bin/dkim-keyctl" -c "$d/b.conf" dns ed.bench.test; } > "$d/zone"

start_daemon() {
  "$bin/dkimhsmd" -c "$d/b.conf" -f 2>> "$d/daemon.log" & dpid=$!
  wait_sock "$d/agent.sock"
}
start_milter() {
  rm -f "$d/milter.sock"
  "$bin/dkimhsm-milter" -c "$d/b.conf" 2>> "$d/milter.log" & mpid=$!
  wait_sock "$d/milter.sock"
}
stop_milter() { kill "$mpid"; wait "$mpid" 2>/dev/null || true; mpid=""; }
start_daemon
start_milter
echo "== dkimhsmd: $workers token workers; milterload: $conns connections, $secs s, ~$size-byte messages, $rounds rounds"

# ---- ceiling and load, interleaved per round
# One round: the raw ceiling (token_ceiling --raw-only, same token, same key,
# $workers threads) for half the time, the full path under milterload, and
# the ceiling for half the time again. The round's ceiling is the mean of the
# two halves, so a machine that speeds up or slows down during the round
# (these are shared VMs) moves both sides of the ratio alike.
ceiling_half() { # alg label file
  half=$(awk -v s="$secs" 'BEGIN { h = s / 2; print (h < 1 ? 1 : h) }')
  "$ceiling" --type "$1" --label "$2" --threads "$workers" --seconds "$half" --raw-only \
    > "$3" || fail "token_ceiling $1: $(tail -2 "$3")"
  sed -n 's/^raw .* \([0-9.]*\)\/s$/\1/p' "$3"
}
one_round() { # alg domain label round
  before=$(ceiling_half "$1" "$3" "$d/ceil.$1.$4.a")
  dt0=$(ticks "$dpid") mt0=$(ticks "$mpid")
  "$load" -s "unix:$d/milter.sock" -c "$conns" -t "$secs" --size "$size" --unique \
    --from "bench@$2" --expect-sign 1 --sample 50 -o "$d/out.$1.$4" > "$d/load.$1.$4" ||
    fail "milterload $1 round $4: $(tail -1 "$d/load.$1.$4")"
  dt=$(($(ticks "$dpid") - dt0)) mt=$(($(ticks "$mpid") - mt0))
  after=$(ceiling_half "$1" "$3" "$d/ceil.$1.$4.b")
  raw=$(awk -v a="$before" -v b="$after" 'BEGIN { print (a + b) / 2 }')
  rate=$(field per_sec "$d/load.$1.$4") msgs=$(field msgs "$d/load.$1.$4")
  awk -v r="$rate" -v c="$raw" -v p50="$(field p50_ms "$d/load.$1.$4")" \
      -v p99="$(field p99_ms "$d/load.$1.$4")" -v n="$msgs" -v dt="$dt" -v mt="$mt" \
      -v lc="$(field cpu_s "$d/load.$1.$4")" -v hz="$(getconf CLK_TCK)" -v k="$4" \
      -v a="$before" -v b="$after" 'BEGIN {
    printf "  round %s: ceiling %6.0f/s (%.0f before, %.0f after)  dkimhsm %6.0f msgs/s  ratio %.2f  p50 %.1f ms  p99 %.1f ms\n",
           k, c, a, b, r, r / c, p50, p99
    printf "           cpu per message: dkimhsmd %.3f ms, milter %.3f ms, milterload %.3f ms\n",
           1000 * dt / hz / n, 1000 * mt / hz / n, 1000 * lc / n }'
  echo "$rate $raw" >> "$d/rounds.$1"
}

verify_samples() { # alg
  $py "$here/../verify/dkimpy_verify.py" "$d/zone" "$d"/out."$1".*/*.eml --expect 1 --quiet \
    > "$d/verify.$1" || { tail -3 "$d/verify.$1"; fail "dkimpy rejected $1 samples"; }
  echo "  $(tail -1 "$d/verify.$1")"
}

summarise() { # alg name
  ratio=$(awk '{ print $1 / $2 }' "$d/rounds.$1" | median)
  rate=$(awk '{ print $1 }' "$d/rounds.$1" | median)
  ceil=$(awk '{ print $2 }' "$d/rounds.$1" | median)
  # Token and milter share the cores: a message costs 1/ceiling + 1/floor
  # of the machine at best, so no front end can pass that bound.
  awk -v n="$2" -v r="$rate" -v c="$ceil" -v q="$ratio" -v f="$pass" 'BEGIN {
    b = 1 / (1 / c + 1 / f)
    printf "%s: %.0f msgs/s, token ceiling %.0f/s, ratio %.2f (median of rounds; target >= 0.70: %s)\n",
           n, r, c, q, (q >= 0.7 ? "MET" : "MISSED")
    printf "%s: bound from the milter floor (%.0f msgs/s): %.0f msgs/s = %.2f of the ceiling; reached %.0f%% of it\n",
           n, f, b, b / c, 100 * r / b }' | tee -a "$d/summary"
}

# The milter path without the token: a domain no key signs, so every message
# is looked up and passed unsigned. The cost of the milter protocol itself
# on this machine, which bounds what any ratio to the token ceiling can be.
floor() {
  "$load" -s "unix:$d/milter.sock" -c "$conns" -t "$secs" --size "$size" --unique \
    --from bench@nokey.bench.test --expect-sign 0 > "$d/floor" || fail "floor: $(tail -1 "$d/floor")"
  field per_sec "$d/floor"
}
echo "== milter floor (no key for the domain: pass unsigned)"
pass=$(floor)
echo "  $pass msgs/s, p99 $(field p99_ms "$d/floor") ms"

for alg in rsa ed25519; do
  if [ $alg = rsa ]; then dom=rsa.bench.test sel=rsa1 name=RSA-2048; else dom=ed.bench.test sel=ed1 name=Ed25519; fi
  echo "== $name"
  r=1
  while [ $r -le "$rounds" ]; do one_round $alg $dom "$sel._domainkey.$dom" $r; r=$((r + 1)); done
  verify_samples $alg
  summarise $alg $name
done

# ---- OpenDKIM, same load generator, key in a file
if [ "$opendkim" = 1 ]; then
  for alg in rsa ed25519; do
    flag=""; [ $alg = ed25519 ] && flag=--ed25519
    echo "== OpenDKIM $alg (key in a file)"
    r=1
    while [ $r -le "$rounds" ]; do
      if "$here/opendkim_baseline.sh" $flag "$load" -c "$conns" -t "$secs" --size "$size" \
          --unique --expect-sign 1 > "$d/odk.$alg.$r" 2>&1; then
        rate=$(field per_sec "$d/odk.$alg.$r")
        echo "  round $r: $rate msgs/s, p99 $(field p99_ms "$d/odk.$alg.$r") ms"
        echo "$rate" >> "$d/odk.$alg"
      else
        echo "  round $r: not measured: $(tail -1 "$d/odk.$alg.$r")"
      fi
      r=$((r + 1))
    done
    [ -s "$d/odk.$alg" ] || continue
    odk=$(median < "$d/odk.$alg")
    ours=$(awk '{ print $1 }' "$d/rounds.$alg" | median)
    awk -v a="$alg" -v o="$ours" -v k="$odk" 'BEGIN {
      printf "OpenDKIM %s: %.0f msgs/s; dkimhsm/OpenDKIM %.2f (%s)\n", a, k, o / k,
             (o > k ? "dkimhsm faster" : "OpenDKIM faster") }' | tee -a "$d/summary"
  done
fi

# ---- body hashing, 10 MB
echo "== body hashing"
"$bin/tests/bodyhash" | tee "$d/bodyhash"

# ---- the milter's memory against message size: a fresh milter per size,
# a few messages through it, then its peak RSS (VmHWM).
echo "== dkimhsm-milter memory against message size (4 connections, 8 messages each size)"
for sz in 4096 1048576 10485760; do
  stop_milter; start_milter
  "$load" -s "unix:$d/milter.sock" -c 4 -n 8 --size "$sz" --from "bench@rsa.bench.test" \
    --expect-sign 1 --timeout 60 > "$d/mem.$sz" || fail "milterload --size $sz: $(tail -1 "$d/mem.$sz")"
  printf '  %9d-byte messages: peak RSS %6d KB, now %6d KB\n' "$sz" \
    "$(status_kb "$mpid" VmHWM)" "$(status_kb "$mpid" VmRSS)" | tee -a "$d/memory"
done
# From 4 KB to 1 MB the body starts to arrive in libmilter's 64 KB chunks (a
# buffer per command, per worker thread); from 1 MB to 10 MB only growth with
# the message itself would show.
awk 'NR == 1 { a = $5 } NR == 2 { m = $5 } END {
  printf "milter peak RSS 10 MB vs 4 KB messages: %+d KB; 10 MB vs 1 MB: %+d KB\n", $5 - a, $5 - m }' \
  "$d/memory" | tee -a "$d/summary"

echo "== summary"
cat "$d/summary"
grep -E 'relaxed|simple|raw SHA' "$d/bodyhash" || true
