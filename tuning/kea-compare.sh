#!/usr/bin/env bash
# DORA/s of leasequeryd (2 shards) side by side with ISC Kea 2.2 (Debian's kea-dhcp4-server +
# kea-dhcp6-server in DHCPv4-over-DHCPv6 mode, memfile), driven by the same `loadgen churn`.
#
#   cargo build --release --bins      # or LQD_BIN_DIR=/dir/with/leasequeryd+loadgen
#   sudo tuning/kea-compare.sh        # env: CLIENTS (20000) CONC (64) RUNS (3) NAT_CHECK (1) KEEP (0)
#
# Needs root: installs kea-dhcp4-server, kea-dhcp6-server and nftables with apt if missing, then
# runs every server in a private network namespace (unshare --net, loopback only), so port 547
# is free and nothing leaks to the host. Each run starts fresh servers, one after the other:
# Kea in memory (memfile persist false), leasequeryd in memory, Kea with persist true,
# leasequeryd with --data-dir. Prints per run dora/s, p50/p99, timeouts and the servers' CPU
# time, then medians and the ratio leasequeryd/Kea. Exits 1 if a server answered nothing.
#
# Why a NAT rule: Kea's kea-dhcp6 sends every DHCPV4-RESPONSE to UDP port 546 of a direct client
# (547 of a relay, unless the relay sent a Relay Source Port option, RFC 8357), whatever port the
# query came from; loadgen's socket has an ephemeral port. An nftables SNAT rule in the namespace
# rewrites loadgen's source port to 546 for datagrams to port 547, and conntrack maps the replies
# back. It holds one mapping only, so loadgen runs with --threads 1, and every server run gets
# a namespace of its own (a conntrack entry left by the previous run's port would block the
# mapping). Both servers get the same rule.
# Shared addresses (PSIDs, option 159) are not a Kea 2.2 feature: --shared-ratio 0 for both.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
BIN="${LQD_BIN_DIR:-$REPO/target/release}"
CLIENTS="${CLIENTS:-20000}"
CONC="${CONC:-64}"
RUNS="${RUNS:-3}"
NAT_CHECK="${NAT_CHECK:-1}"

LG_ARGS=(churn --server "[::1]:547" --clients "$CLIENTS" --shared-ratio 0 --renewals 0
         --release-ratio 0 --concurrency "$CONC" --threads 1)

if [ -z "${KEA_COMPARE_ONE:-}" ]; then
  # ---- on the host: check, install, then one namespace per server run ----
  [ "$(id -u)" = 0 ] || { echo "kea-compare: needs root (apt, unshare --net, nft, port 547)" >&2; exit 2; }
  for b in leasequeryd loadgen; do
    [ -x "$BIN/$b" ] || { echo "kea-compare: $BIN/$b missing (cargo build --release --bins, or set LQD_BIN_DIR)" >&2; exit 2; }
  done
  pkgs=""
  command -v kea-dhcp4 >/dev/null || pkgs="$pkgs kea-dhcp4-server"
  command -v kea-dhcp6 >/dev/null || pkgs="$pkgs kea-dhcp6-server"
  command -v nft >/dev/null || pkgs="$pkgs nftables"
  if [ -n "$pkgs" ]; then
    echo "kea-compare: apt-get install -y$pkgs" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs >&2 || { echo "kea-compare: apt-get failed" >&2; exit 2; }
    # The packages enable and may start their services (with /etc/kea's config): stop them,
    # this script runs its own instances in its own namespaces.
    if [ -d /run/systemd/system ]; then
      systemctl stop kea-dhcp4-server kea-dhcp6-server kea-ctrl-agent 2>/dev/null || true
    fi
  fi
  command -v python3 >/dev/null || { echo "kea-compare: python3 missing" >&2; exit 2; }

  W="$(mktemp -d /tmp/kea-compare.XXXXXX)"
  CHILD=""
  cleanup() {
    [ -n "$CHILD" ] && { kill -TERM "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; }
    if [ "${KEEP:-0}" = 1 ]; then echo "kea-compare: kept $W" >&2; else rm -rf "$W"; fi
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  one() { # SERVER MODE RUN NAT(1|0): one server run in a fresh network namespace
    KEA_COMPARE_ONE="$*" KEA_COMPARE_DIR="$W" unshare --net -- bash "$0" &
    CHILD=$!
    wait "$CHILD"
    CHILD=""
  }
  : > "$W/results.tsv"
  echo "# kea-compare $(date -u +%FT%TZ) $(uname -n) $(nproc) cores; kea $(kea-dhcp4 -v) (Debian $(dpkg-query -W -f '${Version}' kea-dhcp4-server 2>/dev/null)); $("$BIN/leasequeryd" --version 2>/dev/null | head -n 1)"
  echo "# loadgen ${LG_ARGS[*]} (timeout 1 s, 3 retries)"
  echo "# Kea: kea-dhcp6 -> kea-dhcp4 over dhcp4o6-port 6767 (tuning/kea/), memfile, persist false (memory) / true (durable); leasequeryd: --shards 2, authority-bigpool.toml, --data-dir (durable)"
  for run in $(seq "$RUNS"); do
    one kea memory "$run" 1
    one lqd memory "$run" 1
    one kea durable "$run" 1
    one lqd durable "$run" 1
  done
  # The cost of the SNAT/conntrack detour: leasequeryd in memory once without the rule (it
  # answers the query's source port, so it needs none). Not in the medians.
  [ "$NAT_CHECK" = 1 ] && one lqd memory nonat 0

  python3 - "$W/results.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
timed = [r for r in rows if r[2] != "nonat"]
def med(server, mode, col):
    v = [float(r[col]) for r in timed if r[0] == server and r[1] == mode]
    return statistics.median(v) if v else float("nan")
print()
print("medians          | DORA/s | dora p50 | dora p99 | timeouts")
for mode in ("memory", "durable"):
    for server in ("kea", "lqd"):
        print(f"{server:4} {mode:11} | {med(server, mode, 3):6.0f} | {med(server, mode, 5)/1000:5.1f} ms | "
              f"{med(server, mode, 6)/1000:5.1f} ms | {med(server, mode, 7):.0f}")
for mode, note in (("memory", "Kea memfile persist false"),
                   ("durable", "Kea memfile persist true, leasequeryd --data-dir")):
    k, q = med("kea", mode, 3), med("lqd", mode, 3)
    print(f"ratio leasequeryd/Kea, {mode} ({note}): {q / k:.1f}x" if k > 0
          else f"ratio leasequeryd/Kea, {mode}: Kea answered nothing")
dead = sorted({f"{r[0]} {r[1]} run {r[2]}" for r in rows if r[4] == "0"})
if dead:
    print("no answer in: " + ", ".join(dead))
    sys.exit(1)
PY
  exit $?
fi

# ---- inside a fresh network namespace: one server run ----
read -r SERVER MODE RUN NAT <<< "$KEA_COMPARE_ONE"
RES="$KEA_COMPARE_DIR/results.tsv"
D="$KEA_COMPARE_DIR/$SERVER-$MODE-$RUN"
mkdir -p "$D"
PIDS=""
cleanup() {
  for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
  for p in $PIDS; do wait "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip link set lo up || exit 2
if [ "$NAT" = 1 ]; then
  nft -f - <<'NFT' || { echo "kea-compare: nft failed (kernel without nf_tables NAT?)" >&2; exit 2; }
table ip6 kea_compare {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    ip6 daddr ::1 udp dport 547 snat to [::1]:546
  }
}
NFT
fi

TCK=$(getconf CLK_TCK)
cpu_s() { # user+system CPU seconds of a live process
  awk -v t="$TCK" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' "/proc/$1/stat" 2>/dev/null || echo "?"
}
wait_udp() { # PORT...: until each UDP port is bound (10 s at most)
  for _ in $(seq 100); do
    local ok=1 p
    for p in "$@"; do [ -n "$(ss -Huan "sport = :$p")" ] || ok=0; done
    [ $ok = 1 ] && return 0
    sleep 0.1
  done
  return 1
}

if [ "$SERVER" = kea ]; then
  # The committed configs with this run's lease files and persist flag (kea-dhcp6 holds no
  # leases in 4o6 mode: always persist false).
  python3 - "$HERE/kea" "$D" "$MODE" <<'PY' || exit 2
import json, sys
src, d, mode = sys.argv[1:]
for v in ("4", "6"):
    j = json.load(open(f"{src}/kea-dhcp{v}.json"))
    db = j[f"Dhcp{v}"]["lease-database"]
    db["name"] = f"{d}/kea-leases{v}.csv"
    db["persist"] = mode == "durable" and v == "4"
    json.dump(j, open(f"{d}/kea-dhcp{v}.json", "w"), indent=2)
PY
  export KEA_PIDFILE_DIR="$D" KEA_LOCKFILE_DIR="$D"
  kea-dhcp4 -c "$D/kea-dhcp4.json" > "$D/server.log" 2>&1 & K4=$!
  kea-dhcp6 -c "$D/kea-dhcp6.json" > "$D/server6.log" 2>&1 & K6=$!
  PIDS="$K4 $K6"
  CPU_PIDS="$K4 $K6"
  wait_udp 547 67 6767 6768 || { echo "kea: did not bind 547/67/6767/6768" >&2; tail -n 5 "$D"/server*.log >&2; }
else
  extra=()
  [ "$MODE" = durable ] && extra=(--data-dir "$D/data")
  "$BIN/leasequeryd" --shards 2 --metrics-listen off --config "$HERE/authority-bigpool.toml" --lq6-listen "[::1]:5470" \
    --lq4-listen 127.0.0.1:6700 --dhcp4o6-listen "[::1]:547" --log warn "${extra[@]}" \
    > "$D/server.log" 2>&1 & SRV=$!
  PIDS="$SRV"
  CPU_PIDS="$SRV"
  wait_udp 547 || { echo "leasequeryd: did not bind 547" >&2; tail -n 5 "$D/server.log" >&2; }
fi

"$BIN/loadgen" --out "$D/out" "${LG_ARGS[@]}" > "$D/churn.txt" 2>&1
rc=$?
cpu=""
for p in $CPU_PIDS; do cpu="$cpu${cpu:+ + }$(cpu_s "$p")"; done
python3 - "$D/out/summary.json" "$SERVER" "$MODE" "$RUN" "$rc" "$cpu" "$RES" <<'PY'
import json, sys
f, server, mode, run, rc, cpu, res = sys.argv[1:]
label = f"{server:4} {mode:7} run {run}"
try:
    j = json.load(open(f))
except Exception as e:
    print(f"{label} rc={rc}: no summary ({e})")
    open(res, "a").write(f"{server}\t{mode}\t{run}\t0\t0\t0\t0\t0\n")
    sys.exit(1)
c = j["counters"]; m = j["metrics"].get("dora", {}); acks = c.get("acks", 0)
rate = acks / j["elapsed_s"] if j["elapsed_s"] else 0
p50, p99 = m.get("p50", 0), m.get("p99", 0)
retr = sum(v for k, v in c.items() if k.startswith("retransmits_"))
print(f"{label} rc={rc}: dora/s={rate:.0f} acks={acks} elapsed={j['elapsed_s']:.2f}s p50={p50}us "
      f"p99={p99}us timeouts={c.get('timeouts', 0)} retransmits={retr} server_cpu_s={cpu}", flush=True)
open(res, "a").write(f"{server}\t{mode}\t{run}\t{rate:.1f}\t{acks}\t{p50}\t{p99}\t{c.get('timeouts', 0)}\n")
sys.exit(0 if acks else 1)
PY
if [ $? != 0 ]; then
  echo "$SERVER $MODE run $RUN: no answer; log tails:" >&2
  tail -n 5 "$D"/server*.log "$D/churn.txt" >&2
fi
exit 0
