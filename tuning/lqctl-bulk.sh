#!/usr/bin/env bash
# `lqctl bulk --format jsonl > /dev/null` beside `loadgen bulk` on the same server (issue 17
# benchmark): N DHCP4o6 bindings (default 1M, the bulk_stream bench's format: 16 PSIDs per
# address, one link) imported into a 2-shard server, then RUNS alternating dumps by each
# requestor of the whole link (4o6-link:2001:db8:1::). Prints one line per run, the medians of
# bindings/s and their ratio lqctl/loadgen (goal >= 0.5: formatting is lqctl's cost).
# Build first: cargo build --release --bins. Env: N (1000000), RUNS (5), FORMAT (jsonl).
# lqctl's rate is the count of bindings over the wall time of the whole process (connect,
# query, decode, format, write); loadgen's is its own bindings/s (counting only).
set -u
R="${LQD_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
N=${N:-1000000}; RUNS=${RUNS:-5}; FORMAT=${FORMAT:-jsonl}
OUT=$(mktemp -d /tmp/lqd-lqctl-bulk.XXXX)
SRV=
trap '[ -n "$SRV" ] && kill -TERM $SRV 2>/dev/null; wait 2>/dev/null; rm -rf "$OUT"' EXIT
python3 - "$N" > "$OUT/import.jsonl" <<'PY'
import sys
n = int(sys.argv[1])
w = sys.stdout.write
for i in range(n):
    a = 0x0a000000 + i // 16
    ip = f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"
    w(f'{{"ipv4":"{ip}","psid":{{"offset":0,"len":4,"id":{i % 16}}},'
      f'"chaddr":"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",'
      f'"client_id":"ff{i:08x}00030001020000{i & 0xffffff:06x}","state":"active",'
      f'"cltt":1700000000,"expires":2000000000,"relay_id":"000300010200000000{i % 8:02x}",'
      f'"remote_id":"{i:016x}","link":"2001:db8:1::","softwire_src":"2001:db8:1::{i >> 16:x}:{i & 0xffff:x}"}}\n')
PY
P6=$((20000 + RANDOM % 20000)); P4=$((P6 + 1))
"$R/leasequeryd" --shards 2 --no-authority --import "$OUT/import.jsonl" \
  --lq6-listen "[::1]:$P6" --lq4-listen 127.0.0.1:$P4 2> "$OUT/server.log" &
SRV=$!
for _ in $(seq 1 600); do
  grep -q "leasequeryd serving" "$OUT/server.log" 2>/dev/null && break
  kill -0 $SRV 2>/dev/null || { echo "server exited:"; cat "$OUT/server.log"; exit 1; }
  sleep 0.2
done
grep -q "leasequeryd serving" "$OUT/server.log" || { echo "server not serving after 120 s"; exit 1; }
# CPU time (user + system) of each whole process per binding, when GNU time is there: steadier
# than the rates on a shared machine (loadgen's includes writing its report and plots).
timed() { local out=$1; shift; if [ -x /usr/bin/time ]; then /usr/bin/time -f "%U %S" -o "$out" "$@"; else "$@"; fi; }
echo "# $(date -u +%FT%TZ) N=$N RUNS=$RUNS format=$FORMAT server: leasequeryd --shards 2 --no-authority, $(nproc) CPUs"
for run in $(seq 1 "$RUNS"); do
  timed "$OUT/lg.time" "$R/loadgen" --out "$OUT/lg" bulk --server6-lq "[::1]:$P6" --server4-lq 127.0.0.1:$P4 \
    --requestors 1 --queries 1 --query 4o6-link:2001:db8:1:: --expect "$N" > "$OUT/lg.log" 2>&1
  lg_rc=$?
  lg=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.0f %d" % (j["rates"]["bindings/s"], j["counters"].get("bindings", 0)))' "$OUT/lg/summary.json")
  t0=$(date +%s.%N)
  timed "$OUT/lq.time" "$R/lqctl" bulk --server "[::1]:$P6" --query 4o6-link:2001:db8:1:: --format "$FORMAT" > /dev/null 2> "$OUT/lq.log"
  lq_rc=$?
  t1=$(date +%s.%N)
  lqn=$(sed -n 's/.* \([0-9]*\) bindings received.*/\1/p' "$OUT/lq.log")
  lq=$(python3 -c "print(f'{${lqn:-0} / ($t1 - $t0):.0f}')")
  cpu() { [ -s "$1" ] && python3 -c "import sys; u, s = map(float, open(sys.argv[1]).read().split()[-2:]); print(f'{(u + s) * 1e6 / max(int(sys.argv[2]), 1):.2f}')" "$1" "$2" || echo "?"; }
  echo "run=$run loadgen_bindings/s=${lg% *} loadgen_bindings=${lg#* } loadgen_rc=$lg_rc lqctl_bindings/s=$lq lqctl_bindings=${lqn:-0} lqctl_rc=$lq_rc loadgen_cpu_us/binding=$(cpu "$OUT/lg.time" "${lg#* }") lqctl_cpu_us/binding=$(cpu "$OUT/lq.time" "${lqn:-0}")"
done | tee "$OUT/lines"
python3 - "$OUT/lines" <<'PY'
import re, sys, statistics as st
lg, lq, lgc, lqc = [], [], [], []
for line in open(sys.argv[1]):
    f = dict(re.findall(r'(\S+?)=(\S+)', line))
    lg.append(float(f["loadgen_bindings/s"])); lq.append(float(f["lqctl_bindings/s"]))
    if f.get("lqctl_cpu_us/binding", "?") != "?" and f.get("loadgen_cpu_us/binding", "?") != "?":
        lgc.append(float(f["loadgen_cpu_us/binding"])); lqc.append(float(f["lqctl_cpu_us/binding"]))
a, b = st.median(lg), st.median(lq)
print(f"median loadgen bulk: {a:.0f} bindings/s; median lqctl bulk: {b:.0f} bindings/s; ratio lqctl/loadgen = {b / a:.2f} (goal >= 0.5)")
if lqc:
    print(f"median CPU per binding: loadgen {st.median(lgc):.2f} us, lqctl {st.median(lqc):.2f} us")
PY
