#!/usr/bin/env bash
# Change-to-subscriber latency of active leasequery (issue 5 benchmark), with `loadgen active`.
# Build first: cargo build --release --bins. 2 shards, durability off, fresh server per run.
# Env: EXTRA (more server flags, e.g. "--spin-before-park-us 50"), SUBS ("1 100 1000"), RATES ("10000 max"; max = closed loop, concurrency 512), RUNS (5),
#      CLIENTS (20000; each does DORA + RENEWALS renewals = that many changes), RENEWALS (1).
# Prints one line per run and the medians per (subscribers, rate).
set -u
R="${LQD_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
CFG="$(cd "$(dirname "$0")" && pwd)/authority-bigpool.toml"
CLIENTS=${CLIENTS:-20000}; RENEWALS=${RENEWALS:-1}
OUT=$(mktemp -d /tmp/lqd-active.XXXX)
trap 'pkill -P $$ leasequeryd 2>/dev/null; rm -rf "$OUT"' EXIT
for subs in ${SUBS:-1 100 1000}; do
  for rate in ${RATES:-10000 max}; do
    for run in $(seq 1 ${RUNS:-5}); do
      P6=$((20000 + RANDOM % 20000)); P4=$((P6 + 1)); PU=$((P6 + 2))
      "$R/leasequeryd" --shards 2 --config "$CFG" --metrics-listen off --active --allow-insecure-active \
        --max-connections $((subs + 50)) --lq6-listen "[::1]:$P6" --lq4-listen 127.0.0.1:$P4 \
        --dhcp4o6-listen "[::1]:$PU" --log warn ${EXTRA:-} &
      SRV=$!
      sleep 1
      if [ "$rate" = max ]; then load="--concurrency 512"; else load="--rate $rate"; fi
      "$R/loadgen" --out "$OUT/r" active --server "[::1]:$PU" --server6-lq "[::1]:$P6" \
        --server4-lq 127.0.0.1:$P4 --clients "$CLIENTS" --renewals "$RENEWALS" \
        --release-ratio 0 --swchange-ratio 0.1 --subscribers "$subs" --form 4o6 \
        --settle 30 --verify $load > "$OUT/log" 2>&1
      rc=$?
      kill -TERM $SRV; wait $SRV
      python3 - "$OUT/r/summary.json" "$subs" "$rate" "$run" "$rc" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); c = j["counters"]; m = j["metrics"]
u = m.get("active_update", {}); s = m.get("active_from_send", {})
changes = c.get("acks", 0)
print(f'subs={sys.argv[2]} rate={sys.argv[3]} run={sys.argv[4]} rc={sys.argv[5]} '
      f'changes/s={changes / j["elapsed_s"]:.0f} updates={sum(v for k, v in c.items() if k.startswith("active_updates_"))} '
      f'ack->update p50={u.get("p50")} p99={u.get("p99")} p99.9={u.get("p999")} max={u.get("max")} us '
      f'send->update p50={s.get("p50")} p99={s.get("p99")} p99.9={s.get("p999")} max={s.get("max")} us '
      f'before_ack={c.get("active_update_before_ack", 0)} ended={sum(v for k, v in c.items() if k.startswith("error_active_ended"))} '
      f'differing={c.get("error_verify_subscribers_differing", "?")} timeouts={c.get("timeouts", 0)}')
PY
    done
  done
done | tee "$OUT/lines"
echo "medians per (subscribers, rate):"
python3 - "$OUT/lines" <<'PY'
import re, sys, statistics as st
runs = {}
for line in open(sys.argv[1]):
    f = dict(re.findall(r'(\S+?)=(\S+)', line))
    key = (int(f["subs"]), f["rate"])
    runs.setdefault(key, []).append(line)
PATS = [
    ("changes/s", r"changes/s=(\S+)"),
    ("ack->update p50", r"ack->update p50=(\S+)"),
    ("p99", r"ack->update p50=\S+ p99=(\S+)"),
    ("p99.9", r"ack->update .*?p99\.9=(\S+)"),
    ("max", r"ack->update .*?max=(\S+)"),
    ("send->update p50", r"send->update p50=(\S+)"),
    ("p99", r"send->update p50=\S+ p99=(\S+)"),
    ("p99.9", r"send->update .*?p99\.9=(\S+)"),
    ("max", r"send->update .*?max=(\S+)"),
]
for (subs, rate), lines in sorted(runs.items()):
    parts = []
    for name, pat in PATS:
        vals = []
        for l in lines:
            m = re.search(pat, l)
            if m and m.group(1) != "None":
                vals.append(float(m.group(1)))
        parts.append(f"{name}={st.median(vals):.0f}" if vals else f"{name}=-")
    print(f"subs={subs} rate={rate} runs={len(lines)} " + " ".join(parts) + " (us)")
PY
