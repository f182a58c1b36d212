#!/usr/bin/env python3
"""Puts messages on a leasequeryd stream, or purges subjects from it (tests/cluster.rs).

The stream is created when missing with the server's settings (file storage, subjects
PREFIX.>, every message kept). Reads JSON lines from stdin, one action each:
  {"subject": S, "data": TEXT, "msg_id": ID}   publish TEXT on S (msg_id optional)
  {"purge": S}                                 purge every message of subject S
and prints the number of actions done.

usage: cluster_inject.py NATS_URL STREAM PREFIX
"""

import asyncio
import json
import sys

import nats
from nats.js.api import StorageType, StreamConfig


async def main():
    url, stream, prefix = sys.argv[1:4]
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=2)
    js = nc.jetstream()
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"],
                                         storage=StorageType.FILE,
                                         max_msgs_per_subject=100000))
    done = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        a = json.loads(line)
        if "purge" in a:
            await js.purge_stream(stream, subject=a["purge"])
        else:
            headers = {"Nats-Msg-Id": a["msg_id"]} if a.get("msg_id") else None
            await js.publish(a["subject"], a["data"].encode(), headers=headers, timeout=10)
        done += 1
    await nc.close()
    print(done)


asyncio.run(main())
