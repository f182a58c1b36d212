#!/usr/bin/env python3
"""An independent TLS requestor for leasequeryd (issue 15), written with Python's ssl module
(OpenSSL) and hand-made DHCP messages: nothing from the server's code base.

1. STARTTLS on TCP 547, a REPLY without status, TLS (server certificate verified against the
   CA, name lqd.test; client certificate sent), then a DHCPv6 bulk leasequery by link address.
2. DHCPTLS on TCP 67, a DHCPTLS without dhcp-status-code, TLS, then a DHCPBULKLEASEQUERY for
   all configured addresses.
3. STARTTLS again and an ACTIVELEASEQUERY: after its REPLY the script appends a binding to the
   server's feed file and waits for the LEASEQUERY-DATA that reports it.

Prints one line per step; exits non-zero (with the reason) on anything unexpected.
"""
import argparse
import socket
import ssl
import struct
import sys

REQUESTOR = bytes.fromhex("00030001aabbccddeeff")
V4_STATUS_CODE = 151


def frame(m):
    return struct.pack("!H", len(m)) + m


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("the server closed the connection")
        b += c
    return b


def recv_msg(s):
    (n,) = struct.unpack("!H", recv_exact(s, 2))
    return recv_exact(s, n)


def opt6(code, data):
    return struct.pack("!HH", code, len(data)) + data


def opts6(data):
    out = []
    while len(data) >= 4:
        code, n = struct.unpack("!HH", data[:4])
        out.append((code, data[4 : 4 + n]))
        data = data[4 + n :]
    return out


def opts4(msg):
    out = {}
    i = 240
    while i < len(msg) and msg[i] != 255:
        if msg[i] == 0:
            i += 1
            continue
        out[msg[i]] = msg[i + 2 : i + 2 + msg[i + 1]]
        i += 2 + msg[i + 1]
    return out


def v4_message(op, msg_type, xid, extra=b""):
    head = struct.pack("!BBBBIHH", op, 1, 0, 0, xid, 0, 0) + bytes(16 + 16 + 64 + 128)
    return head + b"\x63\x82\x53\x63" + bytes([53, 1, msg_type]) + extra + b"\xff"


def fail(why):
    print("FAIL: " + why)
    sys.exit(1)


def secure(addr, ctx, family):
    host, port = addr.rsplit(":", 1)
    host = host.strip("[]")
    s = socket.create_connection((host, int(port)), timeout=20)
    if family == 6:
        xid = 0x123456
        s.sendall(frame(bytes([23]) + xid.to_bytes(3, "big")))
        ans = recv_msg(s)
        if ans[0] != 7 or int.from_bytes(ans[1:4], "big") != xid:
            fail("STARTTLS: not a REPLY with its xid: " + ans.hex())
        if any(code == 13 for code, _ in opts6(ans[4:])):
            fail("STARTTLS: the REPLY has a status code")
    else:
        xid = 0x01020304
        s.sendall(frame(v4_message(1, 18, xid)))
        ans = recv_msg(s)
        o = opts4(ans)
        if ans[0] != 2 or struct.unpack("!I", ans[4:8])[0] != xid or o.get(53) != b"\x12":
            fail("DHCPTLS: not a DHCPTLS reply with its xid: " + ans.hex())
        if V4_STATUS_CODE in o:
            fail("DHCPTLS: the answer has a dhcp-status-code")
        if 54 not in o:
            fail("DHCPTLS: no server identifier")
    t = ctx.wrap_socket(s, server_hostname="lqd.test")
    return t


def v6_bulk(t, link):
    q = opt6(1, REQUESTOR) + opt6(44, bytes([4]) + socket.inet_pton(socket.AF_INET6, link))
    t.sendall(frame(bytes([14]) + (0x000601).to_bytes(3, "big") + q))
    bindings = 0
    while True:
        m = recv_msg(t)
        if int.from_bytes(m[1:4], "big") != 0x601:
            fail("v6 bulk: wrong xid")
        o = opts6(m[4:])
        if m[0] in (15, 17):
            bindings += any(code == 45 for code, _ in o)
        elif m[0] == 16:
            if any(code == 13 and d[:2] != b"\x00\x00" for code, d in o):
                fail("v6 bulk: DONE with an error status")
            return bindings
        else:
            fail("v6 bulk: unexpected message type %d" % m[0])


def v4_bulk(t):
    xid = 0x0A0B0C0D
    t.sendall(frame(v4_message(1, 14, xid, bytes([55, 4, 51, 91, 109, 159]))))
    addrs = set()
    while True:
        m = recv_msg(t)
        if struct.unpack("!I", m[4:8])[0] != xid:
            fail("v4 bulk: wrong xid")
        kind = opts4(m).get(53)
        if kind in (b"\x0d", b"\x0b"):
            addrs.add(socket.inet_ntoa(m[12:16]))
        elif kind == b"\x0f":
            status = opts4(m).get(V4_STATUS_CODE, b"\x00")
            if status[:1] != b"\x00":
                fail("v4 bulk: DONE with status %r" % status)
            return addrs
        else:
            fail("v4 bulk: unexpected message %r" % kind)


def active(t, feed, line, duid):
    t.sendall(frame(bytes([22]) + (0x000622).to_bytes(3, "big") + opt6(1, REQUESTOR)))
    m = recv_msg(t)
    if m[0] != 15 or any(code == 13 for code, _ in opts6(m[4:])):
        fail("active: not a REPLY without status: " + m.hex())
    with open(feed, "a") as f:
        f.write(line + "\n")
    while True:
        m = recv_msg(t)
        if m[0] != 17:
            fail("active: unexpected message type %d" % m[0])
        cd = [d for code, d in opts6(m[4:]) if code == 45]
        if not cd:
            continue  # keepalive
        inner = opts6(cd[0])
        if (1, duid) not in inner:
            fail("active: an update for another client")
        addrs = [socket.inet_ntop(socket.AF_INET6, d[:16]) for code, d in inner if code == 5]
        return addrs


def main():
    p = argparse.ArgumentParser()
    for a in ("lq6", "lq4", "ca", "cert", "key", "feed", "feed-line", "duid", "link"):
        p.add_argument("--" + a, required=True)
    a = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    t = secure(a.lq6, ctx, 6)
    print("v6 bulk over %s: %d bindings" % (t.version(), v6_bulk(t, a.link)))
    t.close()
    t = secure(a.lq4, ctx, 4)
    addrs = v4_bulk(t)
    print("v4 bulk over %s: %d bindings, %s" % (t.version(), len(addrs), ",".join(sorted(addrs))))
    t.close()
    t = secure(a.lq6, ctx, 6)
    print("active over %s: update for %s" % (t.version(), ",".join(active(t, a.feed, a.feed_line, bytes.fromhex(a.duid)))))
    t.close()


if __name__ == "__main__":
    main()
