# Helpers shared by the benchmark scripts. Sourced, not run: it installs an
# EXIT trap that stops every process started through `bg` and removes the
# scratch directory, so an interrupted run leaves nothing behind
# (BENCH_KEEP=1 keeps the directory, logs and databases, and says where).

BENCH_PIDS=()
BENCH_TMP=""

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$BENCH_TMP" && ${BENCH_KEEP:-} == 1 ]]; then
        log "kept $BENCH_TMP"
    elif [[ -n "$BENCH_TMP" ]]; then
        rm -rf "$BENCH_TMP"
    fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Scratch space. Under target/ by default because target/ sits on the disk
# the build uses; a tmpfs /tmp would hide every disk write.
bench_tmp() {
    mkdir -p "${1:-target}"
    BENCH_TMP=$(mktemp -d "${1:-target}/bench.XXXXXX")
    BENCH_TMP=$(cd "$BENCH_TMP" && pwd)
}

# need COMMAND PACKAGE...: install the Debian packages when COMMAND is missing.
need() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "installing $*"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

# A port the kernel just handed out, so parallel runs never collide.
free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# bg LOGFILE COMMAND...: start COMMAND in the background, remember its PID in
# BG_PID and in the cleanup list.
bg() {
    local logfile=$1
    shift
    "$@" >"$logfile" 2>&1 &
    BG_PID=$!
    BENCH_PIDS+=("$BG_PID")
}

# Stop one process we started and wait for it to exit.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

wait_for_port() {
    local port=$1 i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$port"
}

# start_mosquitto DIR [CONFIG_LINE...]: a private broker on a free port,
# with the extra configuration lines given; sets MQTT_PORT and MOSQUITTO_PID.
start_mosquitto() {
    local dir=$1
    shift
    need mosquitto mosquitto
    need mosquitto_sub mosquitto-clients
    MQTT_PORT=$(free_port)
    {
        echo "listener $MQTT_PORT 127.0.0.1"
        echo "allow_anonymous true"
        echo "persistence false"
        echo "log_dest file $dir/mosquitto.log"
        # As root, mosquitto would otherwise switch to a 'mosquitto' user
        # that cannot write the log in the scratch directory.
        [[ $(id -u) -eq 0 ]] && echo "user root"
        local line
        for line in "$@"; do echo "$line"; done
    } >"$dir/mosquitto.conf"
    bg "$dir/mosquitto.out" mosquitto -c "$dir/mosquitto.conf"
    MOSQUITTO_PID=$BG_PID
    wait_for_port "$MQTT_PORT"
}

# Build the agent once; sets AGENT.
# The agent ships as a static musl binary (one file, no C library to load),
# so that is what is measured: x86_64 musl here, the same build as a Pi's
# aarch64 one. AGENT_TARGET=host measures the ordinary glibc build instead;
# AGENT_FEATURES (e.g. docker) are cargo features to build it with;
# AGENT_PROFILE is the cargo profile (default release; `device`, the
# profile the agent ships with, for footprint figures).
build_agent() {
    need cc build-essential
    local target=${AGENT_TARGET:-x86_64-unknown-linux-musl}
    local profile=${AGENT_PROFILE:-release}
    local features=()
    [[ -n ${AGENT_FEATURES:-} ]] && features=(--features "$AGENT_FEATURES")
    if [[ $target == host ]]; then
        log "building the agent (host, glibc, profile $profile) ${features[*]}"
        cargo build --profile "$profile" -q -p picket-agent "${features[@]}"
        AGENT=$PWD/target/$profile/picket-agent
        return
    fi
    log "building the agent ($target, static, profile $profile) ${features[*]}"
    rustup target add "$target" >/dev/null
    # Debian has no musl-targeted gcc; the host gcc compiles ring's C for
    # x86_64 musl (Rust supplies the musl C library and start files).
    CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-gcc} \
        cargo build --profile "$profile" -q -p picket-agent --target "$target" "${features[@]}"
    AGENT=$PWD/target/$target/$profile/picket-agent
}

# CPU time (user + system) a process has used so far, in clock ticks
# (`getconf CLK_TCK` per second).
cpu_ticks() {
    # Fields 14 and 15 of /proc/PID/stat; the command name (field 2) may hold
    # spaces, so cut everything up to its closing parenthesis first.
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    awk '{print $12 + $13}' <<<"$stat"
}

thread_cpu() { # thread_cpu PID: "name seconds" per thread name (THREAD_IDS=1: per thread), busiest first
    local t stat
    for t in /proc/"$1"/task/*; do
        stat=$(<"$t/stat") || continue
        printf '%s%s %s\n' "$(<"$t/comm")" "${THREAD_IDS:+#${t##*/}}" "$(awk '{print $12 + $13}' <<<"${stat##*) }")"
    done | awk -v c="$(getconf CLK_TCK)" '{n = $1; for (i = 2; i < NF; i++) n = n "_" $i; s[n] += $NF}
        END {for (n in s) printf "%s %.2f\n", n, s[n] / c}' | sort -k2 -rn
}

rss_kib() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# VmRSS split into private memory (heap, stacks) and mapped files (the
# program and its shared libraries, which other processes may share and the
# kernel can drop and re-read).
rss_split_kib() {
    awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} END {print a, f}' "/proc/$1/status"
}

# Bytes this process made dirty (and that were not cancelled by truncation or
# unlinking before writeback): what it will cost the disk.
disk_write_bytes() {
    awk '/^write_bytes:/ {w = $2} /^cancelled_write_bytes:/ {c = $2} END {print w - c}' "/proc/$1/io"
}

median() {
    sort -n | awk '{a[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

max() {
    sort -n | tail -n 1
}

boot_id() {
    cat /proc/sys/kernel/random/boot_id
}

now_ms() {
    date +%s%3N
}
