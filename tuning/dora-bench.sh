#!/usr/bin/env bash
# Build first: cargo build --release --bin leasequeryd --bin loadgen (or set LQD_BIN_DIR to a directory with both). Env: CONC (default 64), THR (1), RUNS ("1 2 3"),
# EXTRA (more server flags, e.g. "--spin-before-park-us 50"), SHARDS (2), PIN_SERVER / PIN_LOADGEN
# (command prefixes, e.g. "taskset -c 0" and "taskset -c 1", to give each its own core).
# DORA/s on 2 shards, durable (--data-dir) vs in memory; 3 runs each, fresh server per run.
set -u
R="${LQD_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
for mode in memory durable; do
  for run in ${RUNS:-1 2 3}; do
    D=$(mktemp -d /tmp/lqd-dora.XXXX)
    P6=$((20000 + RANDOM % 20000)); P4=$((P6 + 1)); PU=$((P6 + 2))
    extra=""; [ $mode = durable ] && extra="--data-dir $D/data"
    ${PIN_SERVER:-} $R/leasequeryd --shards ${SHARDS:-2} --config "$(dirname "$0")/authority-bigpool.toml" --lq6-listen "[::1]:$P6" --lq4-listen 127.0.0.1:$P4 --dhcp4o6-listen "[::1]:$PU" --metrics-listen off --log warn $extra ${EXTRA:-} &
    SRV=$!
    sleep 1
    ${PIN_LOADGEN:-} $R/loadgen --out $D/out churn --server "[::1]:$PU" --server6-lq "[::1]:$P6" --clients 40000 --shared-ratio 0.5 --renewals 0 --release-ratio 0 --concurrency ${CONC:-64} --threads ${THR:-1} --verify > $D/churn.txt 2>&1
    rc=$?
    kill -TERM $SRV; wait $SRV
    python3 - "$D/out/summary.json" "$mode" "$run" "$rc" <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); m=j["metrics"]["dora"]; c=j["counters"]
print(f'{sys.argv[2]} run {sys.argv[3]} rc={sys.argv[4]}: dora/s={c.get("acks",0)/j["elapsed_s"]:.0f} acks={c.get("acks")} elapsed={j["elapsed_s"]:.2f}s p50={m["p50"]}us p99={m["p99"]}us p99.9={m["p999"]}us max={m["max"]}us timeouts={c.get("timeouts",0)} verify_diff={c.get("error_verify_differences",0)}')
PY
    rm -rf $D
  done
done
