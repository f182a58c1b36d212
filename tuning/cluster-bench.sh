#!/usr/bin/env bash
# Publisher figures (issue 18). Needs nats-server (Debian). Build first:
#   cargo build --release --bins        (or LQD_BIN_DIR=target/debug for a dev build)
# Env: RUNS ("1 2 3"), CLIENTS (20000), CONC (64), SHARDS (2).
# PIN=1: the authority's one shard alone on CPU 0 (SHARDS=1); loadgen, nats-server and the
#   publisher thread (cluster-pub) on CPU 1: what publishing costs the shard itself, apart
#   from the CPU that the publisher and NATS take from a machine already saturated by the
#   shards and loadgen (the default mode, everything on the same 2 CPUs).
# PARTS ("dora drain latency"): which parts run.
# 3. latency: change-to-subscriber latency (the DHCPACK at the churn client to the update at an
#    active subscriber, one monotonic clock, `loadgen active --also-server6-lq`): one DHCP4o6
#    subscriber on a replica and one on the authority in the same run, at RATES ("1000 10000")
#    DORA/s open loop (LCLIENTS: 5000 at 1000/s, 20000 otherwise).
# Each DORA run also prints the CPU seconds of every leasequeryd thread and of nats-server.
# 1. DORA/s of a durable authority (--data-dir) with [cluster] publishing against without, in the
#    same script (fresh server, data dir and NATS store per run): the issue's goal is on/off >= 0.9.
# 2. Publisher drain rate: a churn of CLIENTS DORAs with NATS down (the journal spools), then
#    nats-server starts: changes acknowledged / seconds from the start until pending=0 (one
#    publisher thread, the whole backlog read from the journal), and the publisher thread's CPU
#    in that time (its share of one core, and the changes/s one core of it would sustain).
#    With PIN=1 the publisher thread is alone on CPU 1 and nats-server (and the idle shards) on
#    CPU 0: the publisher on a core of its own.
set -u
R="${LQD_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
CFG="$(cd "$(dirname "$0")" && pwd)/authority-bigpool.toml"
CLIENTS=${CLIENTS:-20000}
if [ "${PIN:-0}" = 1 ]; then
  SHARDS=1; ON0="taskset -c 0"; ON1="taskset -c 1"
else
  ON0=; ON1=
fi

counter() { # LOG KEY: the last "counters: cluster" value of KEY
  grep "counters: cluster" "$1" | tail -n 1 | sed -n "s/.* $2=\([0-9]*\).*/\1/p"
}

cpu() { # PID: CPU seconds (user+system) per thread name of PID, summed by name
  python3 - "$1" <<'PY'
import os,sys,collections
pid=sys.argv[1]; hz=os.sysconf('SC_CLK_TCK'); t=collections.Counter()
for tid in os.listdir(f'/proc/{pid}/task'):
    try: s=open(f'/proc/{pid}/task/{tid}/stat').read()
    except OSError: continue
    name=s[s.index('(')+1:s.rindex(')')]; f=s[s.rindex(')')+2:].split()
    t[name]+= (int(f[11])+int(f[12]))/hz
print(' '.join(f'{k}={v:.2f}s' for k,v in sorted(t.items())))
PY
}

start_nats() { # DIR PORT
  $ON1 nats-server -js -sd "$1/js" -p "$2" -a 127.0.0.1 > "$1/nats.log" 2>&1 &
  NATS=$!
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$2) 2>/dev/null && return; sleep 0.05; done
}

PARTS=${PARTS:-dora drain latency}
case " $PARTS " in *" dora "*) ;; *) RUNS_DORA=;; esac
for run in ${RUNS_DORA-${RUNS:-1 2 3}}; do
  for mode in off on; do
    D=$(mktemp -d /tmp/lqd-clb.XXXX)
    P6=$((20000 + RANDOM % 20000)); P4=$((P6 + 1)); PU=$((P6 + 2)); PN=$((P6 + 3))
    cp "$CFG" "$D/cfg.toml"
    NATS=
    if [ $mode = on ]; then
      printf '[cluster]\nnats_url = "nats://127.0.0.1:%s"\nnode_id = "bench"\n' $PN >> "$D/cfg.toml"
      start_nats "$D" $PN
    fi
    $ON0 $R/leasequeryd --shards ${SHARDS:-2} --config "$D/cfg.toml" --lq6-listen "[::1]:$P6" --lq4-listen 127.0.0.1:$P4 --dhcp4o6-listen "[::1]:$PU" --data-dir "$D/data" 2> "$D/srv.log" &
    SRV=$!
    sleep 1
    if [ -n "$ON1" ]; then
      for t in /proc/$SRV/task/*; do
        [ "$(cat $t/comm)" = cluster-pub ] && taskset -p -c 1 "${t##*/}" > /dev/null
      done
    fi
    $ON1 $R/loadgen --out $D/out churn --server "[::1]:$PU" --server6-lq "[::1]:$P6" --clients $CLIENTS --shared-ratio 0.5 --renewals 0 --release-ratio 0 --concurrency ${CONC:-64} > $D/churn.txt 2>&1
    kill -USR1 $SRV; sleep 0.5
    pub=$(counter "$D/srv.log" acknowledged)
    echo "  cpu publishing=$mode run $run: leasequeryd threads: $(cpu $SRV)${NATS:+; nats-server: $(cpu $NATS)}"
    kill -TERM $SRV; wait $SRV
    [ -n "$NATS" ] && { kill -TERM $NATS; wait $NATS; }
    python3 - "$D/out/summary.json" "$mode" "$run" "${pub:-0}" <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); c=j["counters"]
print(f'dora publishing={sys.argv[2]} run {sys.argv[3]}: dora/s={c.get("acks",0)/j["elapsed_s"]:.0f} acks={c.get("acks")} elapsed={j["elapsed_s"]:.2f}s timeouts={c.get("timeouts",0)} acknowledged_by_jetstream_at_end={sys.argv[4]}')
PY
    rm -rf $D
  done
done

case " $PARTS " in *" drain "*) ;; *) RUNS_DRAIN=;; esac
for run in ${RUNS_DRAIN-${RUNS:-1 2 3}}; do
  D=$(mktemp -d /tmp/lqd-clb.XXXX)
  P6=$((20000 + RANDOM % 20000)); P4=$((P6 + 1)); PU=$((P6 + 2)); PN=$((P6 + 3))
  cp "$CFG" "$D/cfg.toml"
  printf '[cluster]\nnats_url = "nats://127.0.0.1:%s"\nnode_id = "bench"\n' $PN >> "$D/cfg.toml"
  $R/leasequeryd --shards ${SHARDS:-2} --config "$D/cfg.toml" --lq6-listen "[::1]:$P6" --lq4-listen 127.0.0.1:$P4 --dhcp4o6-listen "[::1]:$PU" --data-dir "$D/data" 2> "$D/srv.log" &
  SRV=$!
  sleep 1
  $R/loadgen --out $D/out churn --server "[::1]:$PU" --server6-lq "[::1]:$P6" --clients $CLIENTS --shared-ratio 0.5 --renewals 0 --release-ratio 0 --concurrency ${CONC:-64} > $D/churn.txt 2>&1
  if [ "${PIN:-0}" = 1 ]; then
    # The publisher thread alone on CPU 1; the shards (idle now) and nats-server on CPU 0.
    for t in /proc/$SRV/task/*; do
      if [ "$(cat $t/comm)" = cluster-pub ]; then taskset -p -c 1 "${t##*/}" > /dev/null; PUBTID=${t##*/}
      else taskset -p -c 0 "${t##*/}" > /dev/null; fi
    done
  fi
  pubcpu() { # the cluster-pub thread's CPU seconds
    for t in /proc/$SRV/task/*; do
      [ "$(cat $t/comm)" = cluster-pub ] && awk -v hz=$(getconf CLK_TCK) '{ print ($14 + $15) / hz }' "$t/stat"
    done
  }
  c0=$(pubcpu)
  t0=$(date +%s.%N)
  if [ "${PIN:-0}" = 1 ]; then ON1_SAVED=$ON1; ON1=$ON0; start_nats "$D" $PN; ON1=$ON1_SAVED; else start_nats "$D" $PN; fi
  while :; do
    kill -USR1 $SRV; sleep 0.1
    p=$(counter "$D/srv.log" pending); a=$(counter "$D/srv.log" acknowledged)
    [ "${p:-1}" = 0 ] && [ "${a:-0}" -gt 0 ] && break
  done
  t1=$(date +%s.%N)
  c1=$(pubcpu)
  python3 -c "import sys; a=int(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); c=float(sys.argv[5])-float(sys.argv[4]); print(f'drain run $run: {a} changes published from the journal in {t:.2f}s (NATS start included): {a/t:.0f}/s; cluster-pub CPU {c:.2f}s ({c/t*100:.0f}% of one core, {c/a*1e6:.1f} us per change: {a/c if c else 0:.0f}/s of one core)')" "$a" "$t0" "$t1" "$c0" "$c1"
  kill -TERM $SRV; wait $SRV
  kill -TERM $NATS; wait $NATS
  rm -rf $D
done

case " $PARTS " in *" latency "*) ;; *) RATES=;; esac
for rate in ${RATES-1000 10000}; do
 for run in ${RUNS:-1 2 3}; do
  D=$(mktemp -d /tmp/lqd-clb.XXXX)
  P6=$((20000 + RANDOM % 20000)); P4=$((P6 + 1)); PU=$((P6 + 2)); PN=$((P6 + 3)); Q6=$((P6 + 4)); Q4=$((P6 + 5))
  cp "$CFG" "$D/cfg.toml"
  printf '[cluster]\nnats_url = "nats://127.0.0.1:%s"\nnode_id = "bench"\n' $PN >> "$D/cfg.toml"
  printf 'active = true\nallow_insecure_active = true\n[cluster]\nnats_url = "nats://127.0.0.1:%s"\n' $PN > "$D/rep.toml"
  start_nats "$D" $PN
  $R/leasequeryd --shards ${SHARDS:-2} --config "$D/cfg.toml" --active --allow-insecure-active --lq6-listen "[::1]:$P6" --lq4-listen 127.0.0.1:$P4 --dhcp4o6-listen "[::1]:$PU" --data-dir "$D/data" --metrics-listen off --log warn 2> "$D/srv.log" &
  SRV=$!
  $R/leasequeryd --replica --shards ${SHARDS:-2} --config "$D/rep.toml" --lq6-listen "[::1]:$Q6" --lq4-listen 127.0.0.1:$Q4 --metrics-listen off --log warn 2> "$D/rep.log" &
  REP=$!
  sleep 1.5
  if [ "$rate" = 1000 ]; then n=${LCLIENTS:-5000}; else n=${LCLIENTS:-20000}; fi
  $R/loadgen --out $D/out active --server "[::1]:$PU" --server6-lq "[::1]:$Q6" --server4-lq 127.0.0.1:$Q4 --also-server6-lq "[::1]:$P6" --clients $n --renewals 0 --release-ratio 0 --rate $rate --subscribers 1 --form 4o6 --settle 30 --verify > $D/lg.txt 2>&1
  rc=$?
  kill -TERM $REP $SRV; wait $REP $SRV
  kill -TERM $NATS; wait $NATS
  python3 - "$D/out/summary.json" "$rate" "$run" "$rc" <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); c=j["counters"]; m=j["metrics"]
def f(k):
    u=m.get(k,{}); return f'n={u.get("count")} p50={u.get("p50")} p99={u.get("p99")} p99.9={u.get("p999")} max={u.get("max")}'
print(f'latency rate={sys.argv[2]} run {sys.argv[3]} rc={sys.argv[4]} dora/s={c.get("acks",0)/j["elapsed_s"]:.0f} timeouts={c.get("timeouts",0)} '
      f'differing={c.get("error_verify_subscribers_differing","?")}\n  replica   ack->update (us): {f("active_update")}\n  authority ack->update (us): {f("also_active_update")}')
PY
  rm -rf $D
 done
done