#!/usr/bin/env bash
# Fuzzes libdiycloud with cargo-fuzz (libFuzzer, AddressSanitizer, overflow
# checks and debug assertions on): the targets are in fuzz/fuzz_targets.
#
#   tests/fuzz.sh --short [SECONDS] [TARGET...]
#       each target for SECONDS (default 20): what CI runs. Targets run
#       side by side, one per core (FUZZ_JOBS=N sets how many).
#   tests/fuzz.sh --long [LIMIT...] [TARGET...]
#       each target until 10^7 executions or one hour, whichever comes
#       first. A LIMIT replaces the default of its kind: a whole number is
#       a count of executions (1000000), a number with a unit s, m or h a
#       time per target (90s, 10m, 2h). Example: tests/fuzz.sh --long 10m
#   tests/fuzz.sh --list
#
# Every target keeps its corpus in fuzz/corpus/TARGET (seeded from
# fuzz/seeds/TARGET when that exists) and its full libFuzzer output in
# fuzz/target/logs/TARGET.log; a summary line per target is printed at the
# end. Exit status: 0 when no target failed, 1 when one crashed, timed out
# (-timeout=10) or ran out of memory (-rss_limit_mb=2048), with the
# artifact's path, its bytes in hex and the panic message printed; 2 for a
# usage error.
#
# Runs from a fresh clone as root on Debian 12: installs cargo-fuzz (and a
# C++ compiler, libFuzzer is C++) when missing, saying so. Uses the nightly
# toolchain when rustup has one, else stable with RUSTC_BOOTSTRAP=1 (the
# sanitizer flags are nightly-only); FUZZ_TOOLCHAIN=nightly|bootstrap forces
# one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() { # [EXIT STATUS]
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# ---------------------------------------------------------------- arguments

mode=${1:-}
[ $# -gt 0 ] && shift
runs=""
max_time=""
targets=()
case "$mode" in
--short)
    max_time=20
    ;;
--long)
    runs=10000000
    max_time=3600
    ;;
--list) ;;
-h | --help) usage 0 ;;
*) usage ;;
esac

to_seconds() { # 90s, 10m, 2h -> seconds
    local n=${1%?}
    case "$1" in
    *s) echo "$n" ;;
    *m) echo $((n * 60)) ;;
    *h) echo $((n * 3600)) ;;
    esac
}

for arg in "$@"; do
    if [ "$mode" = --short ] && [[ "$arg" =~ ^[0-9]+$ ]]; then
        max_time=$arg
    elif [ "$mode" = --long ] && [[ "$arg" =~ ^[0-9]+$ ]]; then
        runs=$arg
    elif [ "$mode" = --long ] && [[ "$arg" =~ ^[0-9]+[smh]$ ]]; then
        max_time=$(to_seconds "$arg")
    elif [ -f "fuzz/fuzz_targets/$arg.rs" ]; then
        targets+=("$arg")
    else
        echo "tests/fuzz.sh: unknown argument or target '$arg'" >&2
        usage
    fi
done

# ---------------------------------------------------------------- tools

if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    toolchain=$FUZZ_TOOLCHAIN
elif command -v rustup >/dev/null && rustup toolchain list | grep -q '^nightly'; then
    toolchain=nightly
else
    toolchain=bootstrap
fi
case "$toolchain" in
nightly) cargo=(cargo +nightly) ;;
bootstrap)
    # Stable, allowed the nightly flags cargo-fuzz passes (-Zsanitizer...).
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
    ;;
*)
    echo "FUZZ_TOOLCHAIN must be nightly or bootstrap, not '$toolchain'" >&2
    exit 2
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo-fuzz is missing: cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== no C++ compiler (libFuzzer is C++): apt-get install g++"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends g++
    else
        echo "no C++ compiler: libfuzzer-sys builds libFuzzer from C++ (apt-get install g++)" >&2
        exit 1
    fi
fi

if [ "$mode" = --list ]; then
    "${cargo[@]}" fuzz list
    exit 0
fi
if [ ${#targets[@]} = 0 ]; then
    mapfile -t targets < <("${cargo[@]}" fuzz list)
fi

# -a: debug assertions and overflow checks, on top of the sanitizer.
build_flags=(-a)
echo "== $(cargo fuzz --version), toolchain: $toolchain ($("${cargo[@]}" --version))"
echo "== building the fuzz targets: ${cargo[*]} fuzz build ${build_flags[*]}"
"${cargo[@]}" fuzz build "${build_flags[@]}"
# Run the binaries just built (what `cargo fuzz run` does after building
# again): every target fuzzes the same build, and a source edited meanwhile
# does not make one run spend its time compiling.
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$host/release
# As cargo fuzz run sets it (Rust's duplicated globals are no error).
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0

# The login target makes its database under $TMPDIR: a directory of ours,
# removed at the end, so nothing piles up in /tmp.
work=$(mktemp -d "${TMPDIR:-/tmp}/diycloud-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p fuzz/target/logs

libfuzzer_flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
[ -n "$runs" ] && libfuzzer_flags+=("-runs=$runs")
[ -n "$max_time" ] && libfuzzer_flags+=("-max_total_time=$max_time")

# ---------------------------------------------------------------- runs

final_stat() { # LOG NAME: libFuzzer's "stat::NAME: VALUE" (-print_final_stats)
    sed -n "s/^stat::$2: *//p" "$1" | tail -n 1
}

# One target's run: its report (the summary line last) in $work/TARGET.out,
# its status in $work/TARGET.rc.
fuzz_one() { # TARGET
    local target=$1 corpus log dirs flags start rc wall execs per_sec status cov corp files artifact verdict crashes line
    corpus=fuzz/corpus/$target
    log=fuzz/target/logs/$target.log
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    dirs=("$corpus")
    [ -d "fuzz/seeds/$target" ] && dirs+=("fuzz/seeds/$target")
    flags=("${libfuzzer_flags[@]}" "-artifact_prefix=fuzz/artifacts/$target/")
    [ -f "fuzz/dicts/$target.dict" ] && flags+=("-dict=fuzz/dicts/$target.dict")

    echo "== $target: $bin_dir/$target ${flags[*]} ${dirs[*]}"
    start=$(date +%s)
    rc=0
    TMPDIR=$work "$bin_dir/$target" "${flags[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
    wall=$(($(date +%s) - start))

    execs=$(final_stat "$log" number_of_executed_units)
    per_sec=$(final_stat "$log" average_exec_per_sec)
    # The last status line: "#N DONE cov: C ft: F corp: U/Sb ...".
    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$status")
    files=$(find "$corpus" -type f | wc -l)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)

    if [ "$rc" = 0 ]; then
        verdict=ok
        crashes=0
    else
        verdict=FAILED
        crashes=1
        echo "!! $target failed (exit $rc); full output: $log"
        if [ -n "$artifact" ]; then
            echo "!! input: $artifact ($(wc -c <"$artifact") bytes), in hex:"
            od -An -tx1 -v "$artifact" | head -n 64
            grep -m 1 -A 4 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" || true
            echo "!! reproduce: ${cargo[*]} fuzz run ${build_flags[*]} $target $artifact"
        else
            tail -n 30 "$log"
        fi
    fi
    line=$(printf '%-9s %-6s execs=%-10s wall=%-6s exec/s=%-8s corpus=%-12s (%s files) cov=%-6s crashes=%s' \
        "$target" "$verdict" "${execs:-?}" "${wall}s" "${per_sec:-?}" "${corp:-?}" "$files" "${cov:-?}" "$crashes")
    [ -n "$artifact" ] && line+=" artifact=$artifact"
    echo "$line"
    echo "$rc" >"$work/$target.rc"
}

# libFuzzer runs one thread: the targets run side by side, one per core
# (FUZZ_JOBS), each for its own time; their reports print in order.
jobs=${FUZZ_JOBS:-$(nproc)}
running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    fuzz_one "$target" >"$work/$target.out" 2>&1 &
    running=$((running + 1))
done
wait || true

summary=()
failed=0
for target in "${targets[@]}"; do
    cat "$work/$target.out"
    summary+=("$(tail -n 1 "$work/$target.out")")
    [ "$(cat "$work/$target.rc" 2>/dev/null || echo 1)" = 0 ] || failed=1
done

echo "== summary (${mode#--}: ${runs:+at most $runs executions, }${max_time:+at most ${max_time}s} per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
