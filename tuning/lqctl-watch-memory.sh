#!/usr/bin/env bash
# lqctl watch memory per binding held (issue 17 benchmark; goal under 200 octets at 1M):
# a server imports N DHCP4o6 bindings (shared addresses, softwire sources, one link), lqctl
# watch bulk-loads them and subscribes; once caught up its VmRSS is read, and compared with an
# lqctl watch holding nothing (same server, a link with no binding).
# Usage: tuning/lqctl-watch-memory.sh [N] (default 1000000); binaries from target/release
# (cargo build --release --bins) or BIN=target/debug.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
BIN=${BIN:-target/release}
W=$(mktemp -d)
trap 'kill $(cat "$W"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$W"' EXIT
python3 - "$N" > "$W/leases.jsonl" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    a = 0xc6000000 + i // 16
    ip = f"{a>>24}.{(a>>16)&255}.{(a>>8)&255}.{a&255}"
    out.write(f'{{"ipv4":"{ip}","psid":{{"offset":0,"len":4,"id":{i%16}}},"chaddr":"020000{i:06x}",'
              f'"client_id":"ff{i:08x}0003000102{i:08x}","state":"active","cltt":1767225600,'
              f'"expires":1867225600,"link":"2001:db8:1::","softwire_src":"2001:db8:1::{i>>16:x}:{i&0xffff:x}"}}\n')
PY
P6=$((20000 + RANDOM % 20000)); P4=$((P6 + 1)); PU=$((P6 + 2))
"$BIN/leasequeryd" --shards 2 --lq6-listen "[::1]:$P6" --lq4-listen "127.0.0.1:$P4" \
    --dhcp4o6-listen "[::1]:$PU" --active --allow-insecure-active --import "$W/leases.jsonl" \
    2> "$W/srv.log" & echo $! > "$W/srv.pid"
for _ in $(seq 600); do grep -q "leasequeryd serving" "$W/srv.log" && break; sleep 0.5; done
grep "leasequeryd serving" "$W/srv.log"
measure() { # $1 tag, $2 link
    local t0=$(date +%s.%N)
    "$BIN/lqctl" watch --insecure --server "[::1]:$P6" --query "4o6-link:$2" --format jsonl \
        --verbose --timeout 600 > /dev/null 2> "$W/$1.err" & echo $! > "$W/$1.pid"
    for _ in $(seq 1200); do grep -q "caught up" "$W/$1.err" && break; sleep 0.5; done
    local t1=$(date +%s.%N)
    sleep 1
    local pid=$(cat "$W/$1.pid")
    local rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    local hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    kill -TERM "$pid"; wait "$pid" || true; rm "$W/$1.pid"
    echo "$1: $(grep -o 'loaded [0-9]* bindings' "$W/$1.err") in $(echo "$t1 - $t0" | bc) s; VmRSS ${rss} KiB, VmHWM ${hwm} KiB"
    eval "${1}_rss=$rss; ${1}_hwm=$hwm"
}
measure empty 2001:db8:99::
measure full 2001:db8:1::
echo "per binding held: $(( (full_rss - empty_rss) * 1024 / N )) octets (VmRSS difference / $N); peak $(( (full_hwm - empty_hwm) * 1024 / N )) octets (VmHWM)"
