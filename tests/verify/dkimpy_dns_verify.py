#!/usr/bin/python3
"""dkimpy (python3-dkim) against a real DNS server (python3-dnspython).

usage:
  dkimpy_dns_verify.py watch --server HOST:PORT --out FILE [--interval MS] NAME...
  dkimpy_dns_verify.py verify --server HOST:PORT [--watch-log FILE] [--expect N]
                       [--expect-revoked] [--quiet] MESSAGE...

watch: asks SERVER for every NAME's TXT record every MS milliseconds (default
20) until SIGTERM, appending one line per answer to FILE:
  SEND RECV NAME VALUE
(unix seconds of the query and its answer; VALUE is the DKIM record's strings
concatenated, "-" when there is none). This is what DNS served, when.

verify: verifies every DKIM-Signature of each MESSAGE with dkimpy. The key is
looked up at SERVER, now; with --watch-log, it is the record the watch saw in
its first query sent after the message file was written (its mtime: the
message was signed before that), so a message verifies only when DNS
published its key right after it was signed: a key DNS did not publish yet,
or no longer, fails. dkimpy has no word for a revoked key (RFC 6376 §3.6.1:
p= empty); a failure on such a record is reported as "revoked".
--expect-revoked: exit 0 only when every signature fails as revoked.

Prints one line per failure (every signature without --quiet), then
  dkimpy: N of M messages verify (s=SEL:COUNT ...)
Exit 0 when every signature of every message verifies (each message having N
signatures with --expect), 1 otherwise, 2 for a usage error.
"""
import bisect
import os
import re
import signal
import sys
import time

import dkim
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def parse_server(s):
    host, _, port = s.rpartition(":")
    return (host, int(port)) if host else (s, 53)


def query_txt(server, name, timeout=2.0):
    """The DKIM-looking TXT record at name, strings concatenated; None if none."""
    q = dns.message.make_query(name, dns.rdatatype.TXT)
    r = dns.query.udp(q, server[0], port=server[1], timeout=timeout)
    if r.flags & dns.flags.TC:
        r = dns.query.tcp(q, server[0], port=server[1], timeout=timeout)
    if r.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise dns.exception.DNSException(f"{name}: {dns.rcode.to_text(r.rcode())}")
    for rrset in r.answer:
        if rrset.rdtype != dns.rdatatype.TXT:
            continue
        for rd in rrset:
            v = b"".join(rd.strings)
            if re.match(rb"^\s*(v=|p=|k=)", v):
                return v
    return None


def watch(server, out, interval, names):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(out, "a", encoding="ascii") as f:
        while not stop:
            for name in names:
                send = time.time()
                try:
                    v = query_txt(server, name)
                except (dns.exception.DNSException, OSError) as exc:
                    print(f"watch: {name}: {exc}", file=sys.stderr)
                    continue
                f.write(f"{send:.6f} {time.time():.6f} {name.rstrip('.').lower()} "
                        f"{v.decode('ascii') if v else '-'}\n")
            f.flush()
            time.sleep(interval / 1000.0)
    return 0


def load_watch(path):
    """name -> ([send times], [values]) in the order they were asked."""
    seen = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            send, _, name, value = line.split(" ", 3)
            times, values = seen.setdefault(name, ([], []))
            times.append(float(send))
            values.append(None if value.strip() == "-" else value.strip().encode("ascii"))
    return seen


def revoked(record):
    if not record:
        return False
    tags = dict(re.findall(rb"(?:^|;)\s*([a-z]+)\s*=([^;]*)", record))
    return b"p" in tags and tags[b"p"].strip() == b""


def make_dnsfunc(server, seen, when):
    """The lookup dkimpy calls: live, or as the watch saw it after `when`."""
    looked = {}

    def dnsfunc(name, timeout=5):
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        if seen is None:
            looked[key] = query_txt(server, key)
        else:
            times, values = seen.get(key, ([], []))
            i = bisect.bisect_left(times, when)
            if i == len(times):
                raise dkim.DKIMException(f"the watch has no query of {key} after the message")
            looked[key] = values[i]
        return looked[key]

    return dnsfunc, looked


def verify_one(path, server, seen, opts, counts):
    with open(path, "rb") as f:
        msg = f.read()
    dnsfunc, looked = make_dnsfunc(server, seen, os.stat(path).st_mtime)
    d = dkim.DKIM(msg, minkey=1024)
    sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
    ok = 0
    for i, sig in enumerate(sigs):
        tags = dict(re.findall(rb"\b([a-z]+)=([^;]*)", sig[1]))
        sel = re.sub(rb"\s", b"", tags.get(b"s", b"?")).decode()
        dom = re.sub(rb"\s", b"", tags.get(b"d", b"?")).decode()
        counts[sel] = counts.get(sel, 0) + 1
        looked.clear()
        try:
            good, why = d.verify(idx=i, dnsfunc=dnsfunc), "signature did not verify"
        except dkim.DKIMException as exc:
            good, why = False, str(exc)
        name = f"{sel}._domainkey.{dom}".lower()
        if not good and name in looked and looked[name] is None:
            why = "no key record in DNS"
        elif not good and revoked(looked.get(name)):
            why = "revoked"
        passed = why == "revoked" if opts["expect_revoked"] else good
        if not (opts["quiet"] and passed):
            print(f"dkimpy: {path} {i} s={sel} d={dom}: {'pass' if good else 'FAIL ' + why}")
        ok += passed
    if opts["expect"] is not None and len(sigs) != opts["expect"]:
        print(f"dkimpy: {path}: expected {opts['expect']} signatures, found {len(sigs)}")
        return False
    return bool(sigs) and ok == len(sigs)


def main(argv):
    if len(argv) < 2 or argv[1] not in ("watch", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, args = argv[1], argv[2:]
    opts = {"server": None, "out": None, "interval": "20", "watch_log": None, "expect": None,
            "quiet": False, "expect_revoked": False}
    rest = []
    while args:
        a = args.pop(0)
        key = a[2:].replace("-", "_") if a.startswith("--") else None
        if key in ("quiet", "expect_revoked"):
            opts[key] = True
        elif key in opts and args:
            opts[key] = args.pop(0)
        elif key is not None:
            print(f"unknown or incomplete option {a}", file=sys.stderr)
            return 2
        else:
            rest.append(a)
    if opts["server"] is None or not rest or (mode == "watch" and opts["out"] is None):
        print(__doc__, file=sys.stderr)
        return 2
    server = parse_server(opts["server"])
    if mode == "watch":
        return watch(server, opts["out"], int(opts["interval"]), rest)
    if opts["expect"] is not None:
        opts["expect"] = int(opts["expect"])
    seen = load_watch(opts["watch_log"]) if opts["watch_log"] else None
    counts = {}
    good = sum(verify_one(p, server, seen, opts, counts) for p in rest)
    per = " ".join(f"s={k}:{v}" for k, v in sorted(counts.items()))
    print(f"dkimpy: {good} of {len(rest)} messages verify ({per})")
    return 0 if good == len(rest) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
