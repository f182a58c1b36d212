# RSS of leasequeryd (release, 2 shards) with 100, 1000 and 3000 idle DHCPv6 active subscribers
# (ACTIVELEASEQUERY with no LQ_QUERY: every change). Build first: cargo build --release --bin leasequeryd.
# Needs max_connections above the count (given on the command line) and open files for 3000 sockets.
import socket, struct, subprocess, time, sys, os
LQD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "leasequeryd")
p6 = 32547
srv = subprocess.Popen([LQD, "--shards", "2", "--lq6-listen", f"[::1]:{p6}", "--lq4-listen", "127.0.0.1:32067",
                        "--dhcp4o6-listen", "[::1]:32548", "--active", "--allow-insecure-active",
                        "--max-connections", "5000", "--log", "warn"], stderr=subprocess.DEVNULL)
time.sleep(1.5)
def rss(): 
    for l in open(f"/proc/{srv.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) * 1024
def active6(xid):
    # ACTIVELEASEQUERY (21) with Client-ID, no LQ_QUERY: everything
    duid = bytes([0,3,0,1,2,0,0,0,0,1])
    m = bytes([22]) + xid.to_bytes(3, "big") + struct.pack("!HH", 1, len(duid)) + duid
    return struct.pack("!H", len(m)) + m
socks = []
base = rss()
res = [("0", base)]
for target in (100, 1000, 3000):
    while len(socks) < target:
        s = socket.create_connection(("::1", p6))
        s.sendall(active6(len(socks) + 1))
        socks.append(s)
    time.sleep(1.0)
    # read the REPLY on each so the server's state is settled
    ok = 0
    for s in socks[-(target - (res[-1][0] if isinstance(res[-1][0], int) else 0)):]:
        s.settimeout(5)
        b = s.recv(65536)
        if len(b) >= 3 and b[2] == 15: ok += 1
    print(f"  new subscriptions answered with REPLY: {ok}", flush=True)
    time.sleep(0.5)
    r = rss()
    res.append((target, r))
    print(f"{target} subscribers: RSS {r/1e6:.1f} MB, {(r-base)/target:.0f} octets per subscriber", flush=True)
for s in socks: s.close()
srv.terminate(); srv.wait()
