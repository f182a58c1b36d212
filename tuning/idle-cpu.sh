#!/usr/bin/env bash
# CPU an idle leasequeryd burns per spin_before_park_us setting (the cost side of spinning).
# Build first: cargo build --release --bins. Env: SPINS ("0 50 200 1000"), SECS (10).
set -u
R="${LQD_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
for spin in ${SPINS:-0 50 200 1000}; do
  P6=$((20000 + RANDOM % 20000))
  "$R/leasequeryd" --shards 2 --metrics-listen off --spin-before-park-us "$spin" --lq6-listen "[::1]:$P6" \
    --lq4-listen 127.0.0.1:$((P6 + 1)) --dhcp4o6-listen "[::1]:$((P6 + 2))" --log warn &
  SRV=$!
  sleep 2
  a=$(awk '{print $14 + $15}' /proc/$SRV/stat)
  sleep "${SECS:-10}"
  b=$(awk '{print $14 + $15}' /proc/$SRV/stat)
  kill -TERM $SRV; wait $SRV
  hz=$(getconf CLK_TCK)
  python3 -c "print(f'spin_before_park_us=$spin idle CPU: {($b - $a) / $hz / ${SECS:-10} * 100:.1f}% of one core (2 shards)')"
done
