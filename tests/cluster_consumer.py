#!/usr/bin/env python3
"""An independent consumer of leasequeryd's lease-change stream (tests/cluster.rs, issue 18).

Written from the README's "Cluster contract" only, with nats-py (PyPI). Reads every message of
the stream (deliver all), checks each against the documented schema (subject, Nats-Msg-Id,
payload fields and types, version), prints every message as one JSON line
{"subject", "msg_id", "data"} on stdout, and exits 1 (every violation on stderr) when any
message breaks the contract.

usage: cluster_consumer.py NATS_URL STREAM PREFIX NODE_ID
"""

import asyncio
import ipaddress
import json
import re
import sys

import nats
from nats.js.api import DeliverPolicy

HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
STATES = {"available", "active", "expired", "released", "abandoned", "reset", "remote",
          "transitioning"}
V4_KEYS = {"ipv4", "psid", "chaddr", "client_id", "state", "cltt", "expires", "relay_id",
           "remote_id", "link", "softwire_src"}
V6_KEYS = {"duid", "link", "iana", "iapd", "cltt", "relay_id", "remote_id"}
CONTRACT = {"v", "op", "changed", "seq"}


def u32(x):
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 0xFFFFFFFF


def hexfield(x, most):
    return isinstance(x, str) and bool(HEX.match(x)) and len(x) // 2 <= most


def v6addr(x):
    try:
        return ipaddress.IPv6Address(x)
    except (ValueError, TypeError):
        return None


def check(prefix, node, subject, msg_id, data):
    errs = []
    try:
        p = json.loads(data)
    except ValueError as e:
        return [f"not JSON: {e}"]
    if not isinstance(p, dict):
        return ["not an object"]
    if p.get("v") != 1:
        errs.append(f"v = {p.get('v')!r}, want 1")
    if p.get("op") not in ("upsert", "remove"):
        errs.append(f"op = {p.get('op')!r}")
    if not u32(p.get("changed")):
        errs.append(f"changed = {p.get('changed')!r}")
    seq = p.get("seq")
    if not (isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**53):
        errs.append(f"seq = {seq!r}")
    # The node id may hold dashes itself: take it off first.
    rest = (msg_id or "")[len(node) + 1:] if (msg_id or "").startswith(node + "-") else ""
    m = re.match(r"^(\d+)-(\d+)(?:-(\d+)|-rm\.(.+))?$", rest)
    if not m or (isinstance(seq, int) and int(m.group(2)) != seq):
        errs.append(f"Nats-Msg-Id {msg_id!r} is not {node}-<shard>-{seq}[-<n>|-rm.<key>]")
    elif m.group(4) is not None:
        # A remove found by reconciling a republished snapshot: <key> is the subject after
        # <prefix>.<node_id>.
        if f"{prefix}.{node}.{m.group(4)}" != subject or p.get("op") != "remove":
            errs.append(f"Nats-Msg-Id {msg_id!r}: not a remove of {subject!r}")
    if "ipv4" in p:
        extra = set(p) - V4_KEYS - CONTRACT
        if extra:
            errs.append(f"unknown fields {sorted(extra)}")
        try:
            a = ipaddress.IPv4Address(p["ipv4"])
        except ValueError:
            return errs + [f"ipv4 {p['ipv4']!r}"]
        want = f"{prefix}.{node}.v4.{str(a).replace('.', '-')}"
        ps = p.get("psid")
        if ps is not None:
            ok = (isinstance(ps, dict) and set(ps) == {"offset", "len", "id"}
                  and all(isinstance(ps[k], int) for k in ps)
                  and 0 <= ps["offset"] <= 15 and 1 <= ps["len"] <= 16
                  and ps["offset"] + ps["len"] <= 16 and 0 <= ps["id"] < 2 ** ps["len"])
            if not ok:
                errs.append(f"psid {ps!r}")
            else:
                want += f".{ps['offset']}-{ps['len']}-{ps['id']}"
        if subject != want:
            errs.append(f"subject {subject!r}, want {want!r}")
        if not (p.get("chaddr") == "" or hexfield(p.get("chaddr"), 16)):
            errs.append(f"chaddr {p.get('chaddr')!r}")
        for k in ("client_id", "relay_id", "remote_id"):
            if k in p and not hexfield(p[k], 255):
                errs.append(f"{k} {p[k]!r}")
        if p.get("state") not in STATES:
            errs.append(f"state {p.get('state')!r}")
        for k in ("cltt", "expires"):
            if not u32(p.get(k)):
                errs.append(f"{k} {p.get(k)!r}")
        for k in ("link", "softwire_src"):
            if k in p and v6addr(p[k]) is None:
                errs.append(f"{k} {p[k]!r}")
    elif "duid" in p:
        extra = set(p) - V6_KEYS - CONTRACT
        if extra:
            errs.append(f"unknown fields {sorted(extra)}")
        link = v6addr(p.get("link"))
        if not hexfield(p.get("duid"), 130) or link is None:
            return errs + [f"duid/link {p.get('duid')!r} {p.get('link')!r}"]
        want = f"{prefix}.{node}.v6.{p['duid'].lower()}.{link.packed.hex()}"
        if subject != want:
            errs.append(f"subject {subject!r}, want {want!r}")
        for a in p.get("iana", []):
            if v6addr(a.get("addr")) is None or not u32(a.get("preferred")) or not u32(a.get("valid")):
                errs.append(f"iana {a!r}")
        for a in p.get("iapd", []):
            try:
                ipaddress.IPv6Network(a.get("prefix"))
            except (ValueError, TypeError):
                errs.append(f"iapd {a!r}")
        if not u32(p.get("cltt")):
            errs.append(f"cltt {p.get('cltt')!r}")
    else:
        errs.append("neither ipv4 nor duid")
    return errs


async def main():
    url, stream, prefix, node = sys.argv[1:5]
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=2)
    js = nc.jetstream()
    info = await js.stream_info(stream)
    total = info.state.messages
    sub = await js.subscribe(f"{prefix}.>", ordered_consumer=True,
                             deliver_policy=DeliverPolicy.ALL)
    bad = 0
    got = 0
    while got < total:
        try:
            m = await sub.next_msg(timeout=10)
        except nats.errors.TimeoutError:
            print(f"only {got} of {total} messages arrived", file=sys.stderr)
            bad += 1
            break
        got += 1
        msg_id = (m.headers or {}).get("Nats-Msg-Id")
        data = m.data.decode("utf-8", "replace")
        for e in check(prefix, node, m.subject, msg_id, m.data):
            bad += 1
            print(f"{m.subject}: {e}", file=sys.stderr)
        print(json.dumps({"subject": m.subject, "msg_id": msg_id, "data": data}))
    await nc.close()
    print(f"checked {got} messages, {bad} violations", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    asyncio.run(main())
