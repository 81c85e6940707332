#!/usr/bin/python3
"""Verify every DKIM-Signature of a message with dkimpy (python3-dkim).

usage: dkimpy_verify.py ZONEFILE MESSAGE... [--expect N] [--quiet]

ZONEFILE holds the TXT records exactly as `dkim-keyctl dns` prints them
(`name. IN TXT ( "..." "..." )`, one per line); the verifier's DNS lookups are
answered from it and nothing else. Prints one line per signature (--quiet:
only failures and a summary) and exits 0 only when every signature of every
message verifies (and each message has N of them, with --expect).
"""
import re
import sys

import dkim


def load_zone(path):
    records = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            m = re.match(r'^(\S+)\s+(?:\d+\s+)?IN\s+TXT\s+(.*)$', line.strip())
            if not m:
                continue
            name = m.group(1).rstrip(".").lower()
            value = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2)))
            records[name] = value.encode("ascii")
    return records


def verify_one(path, records, expect, quiet):
    """Returns True when every signature of the message at path verifies."""
    with open(path, "rb") as f:
        msg = f.read()

    def dnsfunc(name, timeout=5):
        key = name.decode() if isinstance(name, bytes) else name
        return records.get(key.rstrip(".").lower())

    d = dkim.DKIM(msg, minkey=1024)
    sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
    ok = 0
    for i in range(len(sigs)):
        try:
            good = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as exc:
            good, why = False, str(exc)
        else:
            why = "" if good else "signature did not verify"
        tags = dict(re.findall(rb'\b([a-z]+)=([^;]*)', sigs[i][1]))
        alg = tags.get(b"a", b"?").strip().decode()
        sel = tags.get(b"s", b"?").strip().decode()
        if not (quiet and good):
            print(f"dkimpy: {path if quiet else 'signature'} {i} a={alg} s={sel}: "
                  f"{'pass' if good else 'FAIL ' + why}")
        ok += bool(good)
    if expect is not None and len(sigs) != expect:
        print(f"dkimpy: {path}: expected {expect} signatures, found {len(sigs)}")
        return False
    return bool(sigs) and ok == len(sigs)


def main(argv):
    args = [a for a in argv[1:] if a != "--quiet"]
    quiet = len(args) != len(argv) - 1
    expect = None
    if "--expect" in args:
        i = args.index("--expect")
        expect = int(args[i + 1])
        del args[i:i + 2]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    records = load_zone(args[0])
    good = sum(verify_one(p, records, expect, quiet) for p in args[1:])
    if quiet or len(args) > 2:
        print(f"dkimpy: {good} of {len(args) - 1} messages verify")
    return 0 if good == len(args) - 1 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
