#!/usr/bin/env bash
# dualca against Pebble, with one load generator, on this machine.
#
# Builds dualca and dualca-bench in release mode, then, for each round, starts each target
# fresh (a new temporary data directory, a new PostgreSQL database, a new Pebble process), runs
# the same `dualca-bench` flows against it, and stops it. Targets alternate within a round
# (dualca on SQLite, Pebble, dualca on PostgreSQL), and every second round runs them in the
# opposite order, so that neither a slow patch of the shared machine nor a steady drift of its
# speed (seen up to a fifth within an hour) lands on one target only. It ends with a table of medians over the
# rounds and the ratios dualca / Pebble. For dualca on PostgreSQL the table also gives the CPU
# the processes named postgres used during the run, per issuance: the database's share of the
# cost, which the server's own CPU leaves out (it includes whatever else PostgreSQL did then).
#
# Settings (environment):
#   FLOWS=2000 CONCURRENCY=32 ROUNDS=2          flows per run, flows at once, rounds
#   TARGETS="dualca-sqlite pebble dualca-postgres"
#   BENCH_ARGS="..."                             extra dualca-bench flags (e.g. --reuse-accounts)
#                                                ('--polls every' for the flows of the runs up to
#                                                the twelfth: each server the same requests)
#   EAB_KEYS=CONCURRENCY                         EAB keys dualca's asset gets; new accounts take
#                                                them in turn, as machines that each hold their
#                                                own would (one key made every newAccount on
#                                                PostgreSQL wait for one row: BENCHMARKS.md)
#   HTTP01_PORT=5402 DUALCA_PORT=14401 PEBBLE_PORT=14402 PEBBLE_MGMT_PORT=14403 PEBBLE_TLS_PORT=5401
#   POSTGRES_URL=postgres://postgres@127.0.0.1:5432   server URL, without a database name
#   POSTGRES_PARAMS=                             put after the database name in every URL, e.g.
#                                                '?sslmode=disable', or, with
#                                                POSTGRES_URL=postgres://postgres@, a Unix socket:
#                                                '?host=/var/run/postgresql' (BENCHMARKS.md)
#   CARGO_TARGET_DIR=<repo>/target/release-bench      where the release build goes
#   RESULTS_DIR=<repo>/target/bench-results/<time>    where the JSON reports and logs are kept
#   SKIP_BUILD=1                                 use the binaries already in CARGO_TARGET_DIR
#   KEEP=1                                       keep the temporary data directories
#   REQUEST_TIMEOUT_S=10 RUN_TIMEOUT_S=900       the generator's --request-timeout-s, --timeout-s
#   PEBBLE_TRIES=4                               attempts per round when Pebble deadlocks (below);
#                                                on the slowest machines no 1000-flow Pebble run
#                                                finished in 24 tries: FLOWS=250 did (BENCHMARKS.md,
#                                                tenth run)
#   OCSP_REQUESTS=20000                          after its flows, dualca on SQLite answers this many
#                                                OCSP requests (dualca-bench --ocsp-requests), for
#                                                the OCSP target; 0: none. Not on PostgreSQL, whose
#                                                CPU this script reads over the whole run, nor
#                                                Pebble, whose certificates name no responder
#   PEBBLE_MAX_FAILURES=2*CONCURRENCY            a Pebble run stops after that many failed flows
#                                                (a deadlocked Pebble fails every flow); dualca
#                                                runs never stop early, so every failure is counted
#
# Everything listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail

FLOWS=${FLOWS:-2000}
CONCURRENCY=${CONCURRENCY:-32}
ROUNDS=${ROUNDS:-2}
TARGETS=${TARGETS:-"dualca-sqlite pebble dualca-postgres"}
BENCH_ARGS=${BENCH_ARGS:-}
EAB_KEYS=${EAB_KEYS:-$CONCURRENCY}
HTTP01_PORT=${HTTP01_PORT:-5402}
DUALCA_PORT=${DUALCA_PORT:-14401}
PEBBLE_PORT=${PEBBLE_PORT:-14402}
PEBBLE_MGMT_PORT=${PEBBLE_MGMT_PORT:-14403}
PEBBLE_TLS_PORT=${PEBBLE_TLS_PORT:-5401}
POSTGRES_URL=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
POSTGRES_URL=${POSTGRES_URL%/}
POSTGRES_PARAMS=${POSTGRES_PARAMS:-}
# Where compare.sh itself connects to make and drop the runs' databases.
POSTGRES_ADMIN_URL=$POSTGRES_URL/postgres$POSTGRES_PARAMS
KEEP=${KEEP:-0}
REQUEST_TIMEOUT_S=${REQUEST_TIMEOUT_S:-10}
RUN_TIMEOUT_S=${RUN_TIMEOUT_S:-900}
PEBBLE_TRIES=${PEBBLE_TRIES:-4}
PEBBLE_MAX_FAILURES=${PEBBLE_MAX_FAILURES:-$((2 * CONCURRENCY))}
OCSP_REQUESTS=${OCSP_REQUESTS:-20000}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/release-bench}
RESULTS_DIR=${RESULTS_DIR:-$repo/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
dualca=$CARGO_TARGET_DIR/release/dualca
bench=$CARGO_TARGET_DIR/release/dualca-bench

say() { printf '%s\n' "$*" >&2; }
die() { say "compare.sh: $*"; exit 1; }

for n in FLOWS CONCURRENCY EAB_KEYS ROUNDS REQUEST_TIMEOUT_S RUN_TIMEOUT_S PEBBLE_TRIES PEBBLE_MAX_FAILURES; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
(( ROUNDS <= 20 )) || die "ROUNDS is at most 20"
[[ $OCSP_REQUESTS =~ ^(0|[1-9][0-9]*)$ ]] || die "OCSP_REQUESTS must be 0 or a positive integer, not '$OCSP_REQUESTS'"

# ---- tools -------------------------------------------------------------------------------
need_apt=()
command -v pebble >/dev/null || need_apt+=(pebble)
command -v jq >/dev/null || need_apt+=(jq)
if (( ${#need_apt[@]} )); then
    [[ $(id -u) == 0 ]] || die "missing ${need_apt[*]}: apt-get install -y ${need_apt[*]}"
    say "installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
for tool in curl openssl; do command -v "$tool" >/dev/null || die "$tool is needed"; done

# ---- build ---------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    say "building dualca and dualca-bench (release) in $CARGO_TARGET_DIR"
    build_started=$SECONDS
    (cd "$repo" && nice -n 10 cargo build --release -p dualca -p dualca-bench)
    say "release build took $((SECONDS - build_started)) s"
fi
[[ -x $dualca && -x $bench ]] || die "no release binaries in $CARGO_TARGET_DIR/release"

# ---- clean-up ------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/dualca-compare.XXXXXX")
mkdir -p "$RESULTS_DIR"
pids=()
databases=()
server_pid=

cleanup() {
    local pid db
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for db in "${databases[@]}"; do
        psql "$POSTGRES_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 ||
            say "could not drop database $db"
    done
    if [[ $KEEP == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$HTTP01_PORT" "$DUALCA_PORT" "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT" "$PEBBLE_TLS_PORT"; do
    ! port_busy "$port" || die "port $port on 127.0.0.1 is in use; pick others (see the settings at the top)"
done

stop_server() {
    [[ -n $server_pid ]] || return 0
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    local kept=() pid
    for pid in "${pids[@]}"; do [[ $pid == "$server_pid" ]] || kept+=("$pid"); done
    pids=("${kept[@]}")
    server_pid=
}

# wait_until_up URL LOG CURL_ARGS...: up to 60 s, while the server lives.
wait_until_up() {
    local url=$1 log=$2 i
    shift 2
    for ((i = 0; i < 240; i++)); do
        kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "the server exited before serving $url"; }
        curl -sf -o /dev/null "$@" "$url" && return 0
        sleep 0.25
    done
    tail -n 20 "$log" >&2
    die "$url did not answer within 60 s"
}

# ---- PostgreSQL ------------------------------------------------------------------------------
postgres_ready=0
if [[ " $TARGETS " == *" dualca-postgres "* ]]; then
    if ! pg_isready -q -d "$POSTGRES_ADMIN_URL" 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
        if [[ -n $version ]]; then
            say "starting PostgreSQL $version"
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
            for ((i = 0; i < 40; i++)); do pg_isready -q -d "$POSTGRES_ADMIN_URL" && break; sleep 0.25; done
        fi
    fi
    if psql "$POSTGRES_ADMIN_URL" -qAtc 'select 1' >/dev/null 2>&1; then
        postgres_ready=1
    else
        say "PostgreSQL at $POSTGRES_URL cannot be reached: dualca-postgres is left out"
    fi
fi

# ---- targets -------------------------------------------------------------------------------
# Each sets server_pid, directory and the generator's target-specific flags (target_args).
start_dualca() {
    local backend=$1 run=$2
    local data=$run/data
    local args=(--config "$run/dualca.toml" --data-dir "$data" --listen "127.0.0.1:$DUALCA_PORT")
    # http-01 for 127.0.0.1 must reach the generator's responder, not port 80.
    printf '[validation]\nhttp_port = %s\n' "$HTTP01_PORT" >"$run/dualca.toml"
    if [[ $backend == postgres ]]; then
        local db=dualca_bench_$$_$RANDOM
        psql "$POSTGRES_ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null
        databases+=("$db")
        args+=(--database-url "$POSTGRES_URL/$db$POSTGRES_PARAMS")
    fi
    "$dualca" "${args[@]}" init >>"$run/setup.log" 2>&1
    "$dualca" "${args[@]}" asset register --name bench-1 --owner-team bench --owner-email bench@example.test \
        --service bench --ip 127.0.0.1 >>"$run/setup.log" 2>&1
    local creds kid hmac eab_args=() k
    for ((k = 0; k < EAB_KEYS; k++)); do
        creds=$("$dualca" "${args[@]}" asset credentials bench-1 --ttl 1d 2>>"$run/setup.log")
        kid=$(awk '$1 == "kid:" {print $2}' <<<"$creds")
        hmac=$(awk '$1 == "hmac" && $2 == "key:" {print $3}' <<<"$creds")
        [[ -n $kid && -n $hmac ]] || die "no EAB credentials from 'dualca asset credentials': $creds"
        # = joins each value to its flag: a base64url key begins with - one time in 64.
        eab_args+=("--eab-kid=$kid" "--eab-hmac=$hmac")
    done
    "$dualca" "${args[@]}" serve >"$run/server.out" 2>"$run/server.log" &
    server_pid=$!
    pids+=("$server_pid")
    wait_until_up "https://localhost:$DUALCA_PORT/acme/machine/directory" "$run/server.log" --cacert "$data/ca/root.pem"
    directory=https://localhost:$DUALCA_PORT/acme/machine/directory
    target_args=(--ca-root "$data/ca/root.pem" "${eab_args[@]}")
}

# Pebble's own test certificate is not in the Debian package: make a CA and a localhost leaf.
pebble_tls=$work/pebble-tls
make_pebble_tls() {
    [[ -f $pebble_tls/cert.pem ]] && return 0
    mkdir -p "$pebble_tls"
    (
        cd "$pebble_tls"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=compare-pebble-ca -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
            -keyout key.pem -out leaf.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile leaf.ext \
            -out cert.pem 2>/dev/null
    )
}

start_pebble() {
    local run=$1
    make_pebble_tls
    cat >"$run/pebble.json" <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$pebble_tls/cert.pem",
    "privateKey": "$pebble_tls/key.pem",
    "httpPort": $HTTP01_PORT,
    "tlsPort": $PEBBLE_TLS_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON
    # No sleep before validating, no nonces rejected on purpose, and no reuse of valid
    # authorizations: every flow validates its own http-01 challenge, as on dualca.
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
        pebble -config "$run/pebble.json" >"$run/server.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    wait_until_up "https://localhost:$PEBBLE_PORT/dir" "$run/server.log" --cacert "$pebble_tls/ca.pem"
    directory=https://localhost:$PEBBLE_PORT/dir
    target_args=(--ca-root "$pebble_tls/ca.pem" --max-failures "$PEBBLE_MAX_FAILURES")
}

# CPU milliseconds used so far by the processes named postgres (the database's backends, which
# for dualca-postgres do a large share of the work, and its background processes).
postgres_cpu_ms() {
    local ticks=0 pid t
    for pid in $(pgrep -x postgres); do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) && ticks=$((ticks + t))
    done
    echo $((ticks * 1000 / $(getconf CLK_TCK)))
}

# One attempt at one target. Returns 1 only when Pebble deadlocked and the attempt should be
# made again (see PEBBLE_TRIES at the top).
run_once() {
    local target=$1 round=$2 try=$3
    local run=$work/$target-r$round-t$try
    mkdir -p "$run"
    case $target in
        dualca-sqlite) start_dualca sqlite "$run" ;;
        dualca-postgres) start_dualca postgres "$run" ;;
        pebble) start_pebble "$run" ;;
        *) die "unknown target $target" ;;
    esac
    local out=$run/report.json status=0 db_cpu_before=
    [[ $target == dualca-postgres ]] && db_cpu_before=$(postgres_cpu_ms)
    local ocsp_args=()
    [[ $target == dualca-sqlite ]] && (( OCSP_REQUESTS > 0 )) && ocsp_args=(--ocsp-requests "$OCSP_REQUESTS")
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
    "$bench" --directory "$directory" --flows "$FLOWS" --concurrency "$CONCURRENCY" \
        --http01-port "$HTTP01_PORT" --server-pid "$server_pid" --label "$target" --json \
        --request-timeout-s "$REQUEST_TIMEOUT_S" --timeout-s "$RUN_TIMEOUT_S" \
        "${target_args[@]}" "${ocsp_args[@]}" $BENCH_ARGS >"$out" 2>"$run/bench.err" || status=$?
    # Read before the server stops: its connections' backends exit with it.
    if [[ -n $db_cpu_before ]] && jq -e '.succeeded > 0' "$out" >/dev/null 2>&1; then
        local db_ms=$(( $(postgres_cpu_ms) - db_cpu_before ))
        jq --argjson ms "$db_ms" '.database = {cpu_ms: $ms, cpu_ms_per_issuance: ($ms / .succeeded)}' "$out" >"$out.tmp" &&
            mv "$out.tmp" "$out"
    fi
    # Pebble 2.4.0's in-memory store can deadlock under concurrent load: a reader takes the
    # store's RWMutex twice (MemoryStore.FindValidAuthorization, from every newOrder) while a
    # writer (AddAccount, say) waits, and from then on every request hangs. When requests timed
    # out and Pebble is still up, SIGQUIT makes Go print every goroutine's stack into the log,
    # which tells that deadlock apart from anything else.
    local deadlocked=0
    if [[ $target == pebble ]] && kill -0 "$server_pid" 2>/dev/null &&
        jq -e '.errors | has("(transport)") or has("(timeout)")' "$out" >/dev/null 2>&1; then
        kill -QUIT "$server_pid" 2>/dev/null || true
        sleep 1
        grep -q 'MemoryStore).FindValidAuthorization' "$run/server.log" && deadlocked=1
    fi
    stop_server
    if (( deadlocked )); then
        mkdir -p "$RESULTS_DIR/deadlocked"
        cp "$out" "$RESULTS_DIR/deadlocked/$target-r$round-t$try.json" 2>/dev/null || true
        cp "$run/server.log" "$RESULTS_DIR/deadlocked/$target-r$round-t$try.server.log" 2>/dev/null || true
        echo "round $round try $try" >>"$RESULTS_DIR/pebble-deadlocks.txt"
        say "round $round, pebble (try $try): Pebble deadlocked after $(jq .succeeded "$out") issuances" \
            "(goroutine dump in $RESULTS_DIR/deadlocked/)"
        return 1
    fi
    cp "$run/server.log" "$RESULTS_DIR/$target-r$round.server.log" 2>/dev/null || true
    if (( status > 1 )) || ! jq -e . "$out" >/dev/null 2>&1; then
        cat "$run/bench.err" >&2
        say "round $round, $target: the generator could not run (exit $status)"
        return 0
    fi
    cp "$out" "$RESULTS_DIR/$target-r$round.json"
    jq -r --arg r "$round" '"round \($r) \(.label): \(.succeeded)/\(.flows) ok, \(.issuances_per_s * 10 | round / 10) issuances/s, " +
        "flow p99 \(.flow_latency.p99_ms // "-") ms, server CPU \(.server.cpu_ms_per_issuance // "-") ms/issuance" +
        (if .database then ", PostgreSQL CPU \(.database.cpu_ms_per_issuance * 100 | round / 100) ms/issuance" else "" end) +
        (if .ocsp then "; OCSP \(.ocsp.ok)/\(.ocsp.requests) ok, \(.ocsp.responses_per_s | round) responses/s, " +
            "p99 \(.ocsp.latency.p99_ms // "-") ms, server CPU \(.ocsp.server_cpu_us_per_response // "-" | if type == "number" then (. * 10 | round / 10) else . end) µs/response" else "" end) +
        (if .failed > 0 then ", failures: \(.errors)" else "" end)' "$out" >&2
}

run_target() {
    local target=$1 round=$2 try tries=1
    [[ $target == pebble ]] && tries=$PEBBLE_TRIES
    for ((try = 1; try <= tries; try++)); do
        run_once "$target" "$round" "$try" && return 0
    done
    say "round $round, pebble: deadlocked in all $tries tries; no Pebble result for this round"
}

{
    echo "# compare.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# dualca $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?'), $(rustc --version 2>/dev/null || echo 'rustc ?')"
    echo "# pebble $(dpkg-query -W -f='${Version}' pebble 2>/dev/null || echo '?'); $(psql --version 2>/dev/null | head -n1)"
    echo "# nproc $(nproc); load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# FLOWS=$FLOWS CONCURRENCY=$CONCURRENCY ROUNDS=$ROUNDS BENCH_ARGS='$BENCH_ARGS' POSTGRES_PARAMS='$POSTGRES_PARAMS'"
} | tee "$RESULTS_DIR/meta.txt" >&2

targets=()
for target in $TARGETS; do
    [[ $target == dualca-postgres && $postgres_ready != 1 ]] && continue
    targets+=("$target")
done
(( ${#targets[@]} )) || die "no target to run"

# ABC, CBA, ABC, ...: under a drift that is steady over a pair of rounds, each target's runs
# average out to the same point in time.
for ((round = 1; round <= ROUNDS; round++)); do
    order=("${targets[@]}")
    if (( round % 2 == 0 )); then
        order=()
        for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[i]}"); done
    fi
    for target in "${order[@]}"; do run_target "$target" "$round"; done
done

# ---- the table -----------------------------------------------------------------------------
# Medians over the rounds, per target; then each dualca target divided by Pebble.
summary=$RESULTS_DIR/summary.json
shopt -s nullglob
reports=("$RESULTS_DIR"/*-r[0-9]*.json)
shopt -u nullglob
(( ${#reports[@]} )) || die "no run produced a report; logs in $RESULTS_DIR"
jq -s '
  def median: map(select(. != null)) | sort |
    if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  group_by(.label) | map({
    target: .[0].label,
    runs: length,
    ok: (map(.succeeded) | add), flows: (map(.flows) | add),
    issuances_per_s: (map(.issuances_per_s) | median),
    flow_p50_ms: (map(.flow_latency.p50_ms) | median),
    flow_p99_ms: (map(.flow_latency.p99_ms) | median),
    worst_endpoint_p99_ms: (map([.endpoints | to_entries[] | select(.key != "directory") | .value.p99_ms] | max) | median),
    server_cpu_ms_per_issuance: (map(.server.cpu_ms_per_issuance) | median),
    server_peak_rss_mib: (map(.server.vm_hwm_kb) | median | if . == null then null else . / 1024 end),
    database_cpu_ms_per_issuance: (map(.database.cpu_ms_per_issuance) | median),
    generator_cpu_ms_per_issuance: (map(.generator.cpu_ms_per_issuance) | median),
    ocsp_ok: (map(.ocsp.ok // empty) | add), ocsp_requests: (map(.ocsp.requests // empty) | add),
    ocsp_per_s: (map(.ocsp.responses_per_s) | median),
    ocsp_p99_ms: (map(.ocsp.latency.p99_ms) | median),
    ocsp_server_cpu_us: (map(.ocsp.server_cpu_us_per_response) | median),
    endpoints: (map(.endpoints) | (map(keys) | add | unique) as $names | . as $runs |
      reduce $names[] as $n ({}; .[$n] = {
        p50_ms: ($runs | map(.[$n].p50_ms) | median), p99_ms: ($runs | map(.[$n].p99_ms) | median)}))
  })' "${reports[@]}" >"$summary"

fmt='def f: if . == null then "-" elif . >= 100 then (. | round | tostring) else (. * 100 | round / 100 | tostring) end;'
echo
# Which requests the flows made (dualca-bench --polls): runs before the thirteenth of
# BENCHMARKS.md made every poll; the default since is lean.
polls=$(jq -r -s 'map(.settings.polls // "every") | unique | join(", ")' "${reports[@]}")
echo "Medians over $ROUNDS round(s), FLOWS=$FLOWS, CONCURRENCY=$CONCURRENCY, polls: $polls:"
{
    printf 'target\tok/flows\tissuances/s\tflow p50 ms\tflow p99 ms\tworst endpoint p99 ms\tserver CPU ms/issuance\tserver peak RSS MiB\tgenerator CPU ms/issuance\tPostgreSQL CPU ms/issuance\n'
    jq -r "$fmt"' .[] | [.target, "\(.ok)/\(.flows)", (.issuances_per_s | f), (.flow_p50_ms | f), (.flow_p99_ms | f),
        (.worst_endpoint_p99_ms | f), (.server_cpu_ms_per_issuance | f), (.server_peak_rss_mib | f),
        (.generator_cpu_ms_per_issuance | f), (.database_cpu_ms_per_issuance | f)] | @tsv' "$summary"
} | column -t -s $'\t'

echo
echo "Per endpoint, p50 / p99 ms (medians over the rounds):"
{
    jq -r '"endpoint\t" + (map(.target) | join("\t"))' "$summary"
    jq -r "$fmt"' (map(.endpoints | keys) | add | unique) as $names | . as $t |
        $names[] as $n | [$n] + ($t | map(.endpoints[$n] | if . == null then "-" else "\(.p50_ms | f) / \(.p99_ms | f)" end)) | @tsv' "$summary"
} | column -t -s $'\t'

if jq -e 'any(.[]; .ocsp_requests != null)' "$summary" >/dev/null; then
    echo
    echo "OCSP after the flows, one certificate asked about at concurrency $CONCURRENCY (medians over the rounds):"
    {
        printf 'target\tok/requests\tresponses/s\tp99 ms\tserver CPU µs/response\n'
        jq -r "$fmt"' .[] | select(.ocsp_requests != null) | [.target, "\(.ocsp_ok)/\(.ocsp_requests)",
            (.ocsp_per_s | f), (.ocsp_p99_ms | f), (.ocsp_server_cpu_us | f)] | @tsv' "$summary"
    } | column -t -s $'\t'
fi

if jq -e 'any(.[]; .target == "pebble")' "$summary" >/dev/null; then
    echo
    echo "Ratios dualca / Pebble (issuances/s: higher is better for dualca; the others: lower is):"
    {
        printf 'target\tissuances/s\tflow p99\tserver CPU per issuance\tserver peak RSS\n'
        jq -r "$fmt"' (map(select(.target == "pebble"))[0]) as $p | .[] | select(.target != "pebble") |
            def ratio(k): if .[k] == null or $p[k] == null or $p[k] == 0 then "-" else "\(.[k] / $p[k] | f)x" end;
            [.target, ratio("issuances_per_s"), ratio("flow_p99_ms"), ratio("server_cpu_ms_per_issuance"),
             ratio("server_peak_rss_mib")] | @tsv' "$summary"
    } | column -t -s $'\t'
fi
if [[ -f $RESULTS_DIR/pebble-deadlocks.txt ]]; then
    echo
    echo "Pebble deadlocked (MemoryStore.FindValidAuthorization) in $(wc -l <"$RESULTS_DIR/pebble-deadlocks.txt") attempt(s);" \
        "those attempts were run again and are not in the medians (reports in $RESULTS_DIR/deadlocked/)."
fi
echo
echo "Reports and server logs: $RESULTS_DIR"
