#!/usr/bin/env bash
# Change-to-subscriber latency of active leasequery (issue 5 benchmark), with `loadgen active`.
# Build first: cargo build --release --bins. 2 shards, durability off, fresh server per run.
# Env: EXTRA (more server flags, e.g. "--spin-before-park-us 50"), SUBS ("1 100 1000"), RATES ("10000 max"; max = closed loop, concurrency 512), RUNS (5),
#      CLIENTS (20000; each does DORA + RENEWALS renewals = that many changes), RENEWALS (1),
#      TLS (0; 1 = every run twice, plain and then over TLS: certificates made with openssl as
#      in the README, server `--tls required` without --allow-insecure-active, loadgen
#      --tls-cert/--tls-key/--tls-ca; the medians then add the TLS/plain ratio of p99).
# Prints one line per run and the medians per (subscribers, rate, tls).
set -u
R="${LQD_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
CFG="$(cd "$(dirname "$0")" && pwd)/authority-bigpool.toml"
CLIENTS=${CLIENTS:-20000}; RENEWALS=${RENEWALS:-1}
OUT=$(mktemp -d /tmp/lqd-active.XXXX)
trap 'pkill -P $$ leasequeryd 2>/dev/null; rm -rf "$OUT"' EXIT
MODES=plain
if [ "${TLS:-0}" = 1 ]; then
  MODES="plain tls"
  # A CA, a server certificate for the loopback addresses and a requestor certificate (P-256).
  (cd "$OUT" && set -e
   ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
   openssl req -x509 $ec -days 30 -subj "/CN=bench CA" -keyout ca.key -out ca.pem \
     -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
   for who in server requestor; do
     openssl req $ec -subj "/CN=$who.bench" -keyout $who.key -out $who.csr
     if [ $who = server ]; then
       ext="subjectAltName=IP:::1,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
     else
       ext="subjectAltName=DNS:requestor.bench\nextendedKeyUsage=clientAuth"
     fi
     openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
       -out $who.pem -extfile <(printf "$ext")
   done) > "$OUT/openssl.log" 2>&1 || { cat "$OUT/openssl.log"; exit 1; }
fi
for subs in ${SUBS:-1 100 1000}; do
  for rate in ${RATES:-10000 max}; do
    for run in $(seq 1 ${RUNS:-5}); do
     for mode in $MODES; do
      P6=$((20000 + RANDOM % 20000)); P4=$((P6 + 1)); PU=$((P6 + 2))
      if [ $mode = tls ]; then
        srv_sec="--tls required --tls-cert $OUT/server.pem --tls-key $OUT/server.key --tls-client-ca $OUT/ca.pem"
        lg_sec="--tls-cert $OUT/requestor.pem --tls-key $OUT/requestor.key --tls-ca $OUT/ca.pem"
      else
        srv_sec="--allow-insecure-active"; lg_sec=""
      fi
      "$R/leasequeryd" --shards 2 --config "$CFG" --metrics-listen off --active $srv_sec \
        --max-connections $((subs + 50)) --lq6-listen "[::1]:$P6" --lq4-listen 127.0.0.1:$P4 \
        --dhcp4o6-listen "[::1]:$PU" --log warn ${EXTRA:-} &
      SRV=$!
      sleep 1
      if [ "$rate" = max ]; then load="--concurrency 512"; else load="--rate $rate"; fi
      "$R/loadgen" --out "$OUT/r" active --server "[::1]:$PU" --server6-lq "[::1]:$P6" \
        --server4-lq 127.0.0.1:$P4 --clients "$CLIENTS" --renewals "$RENEWALS" \
        --release-ratio 0 --swchange-ratio 0.1 --subscribers "$subs" --form 4o6 \
        --settle 30 --verify $lg_sec $load > "$OUT/log" 2>&1
      rc=$?
      [ $rc = 0 ] || grep -m3 "loadgen:" "$OUT/log" >&2
      kill -TERM $SRV; wait $SRV
      python3 - "$OUT/r/summary.json" "$subs" "$rate" "$run" "$rc" "$mode" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); c = j["counters"]; m = j["metrics"]
u = m.get("active_update", {}); s = m.get("active_from_send", {})
changes = c.get("acks", 0)
print(f'subs={sys.argv[2]} rate={sys.argv[3]} tls={int(sys.argv[6] == "tls")} run={sys.argv[4]} rc={sys.argv[5]} '
      f'changes/s={changes / j["elapsed_s"]:.0f} updates={sum(v for k, v in c.items() if k.startswith("active_updates_"))} '
      f'ack->update p50={u.get("p50")} p99={u.get("p99")} p99.9={u.get("p999")} max={u.get("max")} us '
      f'send->update p50={s.get("p50")} p99={s.get("p99")} p99.9={s.get("p999")} max={s.get("max")} us '
      f'before_ack={c.get("active_update_before_ack", 0)} ended={sum(v for k, v in c.items() if k.startswith("error_active_ended"))} '
      f'differing={c.get("error_verify_subscribers_differing", "?")} timeouts={c.get("timeouts", 0)}')
PY
     done
    done
  done
done | tee "$OUT/lines"
echo "medians per (subscribers, rate, tls):"
python3 - "$OUT/lines" <<'PY'
import re, sys, statistics as st
runs = {}
for line in open(sys.argv[1]):
    f = dict(re.findall(r'(\S+?)=(\S+)', line))
    key = (int(f["subs"]), f["rate"], f["tls"])
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
p99 = {}
for (subs, rate, tls), lines in sorted(runs.items()):
    parts = []
    for name, pat in PATS:
        vals = []
        for l in lines:
            m = re.search(pat, l)
            if m and m.group(1) != "None":
                vals.append(float(m.group(1)))
        parts.append(f"{name}={st.median(vals):.0f}" if vals else f"{name}=-")
    print(f"subs={subs} rate={rate} tls={tls} runs={len(lines)} " + " ".join(parts) + " (us)")
    vals = [float(m.group(1)) for l in lines
            for m in [re.search(r"ack->update p50=\S+ p99=(\S+)", l)] if m and m.group(1) != "None"]
    if vals:
        p99[(subs, rate, tls)] = st.median(vals)
for (subs, rate, tls), v in sorted(p99.items()):
    plain = p99.get((subs, rate, "0"))
    if tls == "1" and plain:
        print(f"subs={subs} rate={rate}: ack->update p99 TLS/plain = {v / plain:.2f} (goal <= 1.5)")
PY
