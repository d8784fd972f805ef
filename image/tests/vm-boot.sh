#!/usr/bin/env bash
# Boot test of a picket image in QEMU's arm64 virt machine.
#
#   image/tests/vm-boot.sh [--image IMG] [--agent BIN]
#
# 1. builds the static aarch64 agent and its .deb, and an image with
#    image/build (or takes --image, built before by image/build);
# 2. injects into a copy the agent (image/inject), a base configuration
#    whose broker does not exist, and a first-boot picket.toml on the boot
#    partition pointing at a Mosquitto this script starts on a free port of
#    127.0.0.1 (the VM reaches it as 10.0.2.2 through QEMU's user
#    networking), with the status LED on line 0 of the virt machine's PL061
#    GPIO controller; plus a test unit that reports on the serial console;
# 3. boots it with `qemu-system-aarch64 -M virt -cpu cortex-a53 -snapshot`
#    on the image's own kernel and initrd, and checks:
#    - the agent's birth and telemetry arrive, from the first-boot device
#      id (so the first-boot file was installed), time from power-on shown;
#    - inside the VM: agent.toml is 0600, picket.toml is gone from the boot
#      partition, the unit's systemd-analyze exposure, an empty capability
#      bounding set;
#    - the LED line, read from the VM's /sys/kernel/debug/gpio, is an output
#      of picket-agent and takes both levels once the agent is connected;
#    - remote commands under the hardened unit: ping, service.restart
#      (systemctl) and service.logs (journalctl) succeed.
#
# Ends with "N passed, N failed"; exit code 1 if anything failed. Needs
# root (image/build), qemu-system-arm, qemu-user-static with binfmt,
# mmdebstrap, mosquitto, mosquitto-clients, cargo-deb.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
# shellcheck source=image/lib.sh
source image/lib.sh
PROG=vm-boot

image="" agent=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --image) image=${2:?--image needs a value}; shift 2 ;;
        --agent) agent=${2:?--agent needs a value}; shift 2 ;;
        *) echo "usage: image/tests/vm-boot.sh [--image IMG] [--agent BIN]" >&2; exit 2 ;;
    esac
done

# How long to wait for each thing: generous, the machine may be loaded.
# The figure that matters (power-on to telemetry) is measured and printed.
WAIT_BOOT=${PICKET_VM_WAIT:-300}
TARGET_SECS=90

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [[ -z ${2:-} ]] || printf '      %s\n' "$2"; }
finish() {
    printf '\n%d passed, %d failed\n' "$passed" "$failed"
    [[ $failed -eq 0 ]]
    exit $?
}

for tool in qemu-system-aarch64 mosquitto mosquitto_sub mosquitto_pub debugfs; do
    command -v "$tool" >/dev/null || { fail "$tool installed"; finish; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/picket-vm.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- build ----------------------------------------------------------------

if [[ -z $agent ]]; then
    log "building the aarch64 agent"
    cross/build --target aarch64-unknown-linux-musl --out "$WORK/dist" >/dev/null || { fail "cross/build"; finish; }
    agent=target/aarch64-unknown-linux-musl/device/picket-agent
fi
if [[ -z $image ]]; then
    log "building the .deb and the image"
    cargo deb -p picket-agent --profile device --no-strip --target aarch64-unknown-linux-musl \
        --output "$WORK/deb/" >/dev/null || { fail "cargo deb"; finish; }
    image_build_start=$(date +%s)
    image/build --out "$WORK/built.img" --deb "$WORK"/deb/picket-agent_*_arm64.deb --no-pi-firmware \
        2>"$WORK/build.log" || { tail -n 30 "$WORK/build.log"; fail "image/build"; finish; }
    pass "image/build ($(($(date +%s) - image_build_start)) s)"
    image=$WORK/built.img
else
    cp --sparse=always "$image" "$WORK/built.img"
    image=$WORK/built.img
fi

# ---- broker, configuration, injection -------------------------------------

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat >"$WORK/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
$( [[ $(id -u) -eq 0 ]] && echo "user root" )
EOF
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)

device=vm-$(date +%s)-$RANDOM
cat >"$WORK/base.toml" <<'EOF'
# The base configuration: a broker that does not exist. Only the
# first-boot file can make this agent reach the test's broker.
[device]
id = "not-this-one"
[broker]
url = "mqtt://192.0.2.1:1883"
EOF
cat >"$WORK/picket.toml" <<EOF
[device]
id = "$device"
[broker]
url = "mqtt://10.0.2.2:$port"
[payload]
format = "json"
[sampling]
interval = "2s"
[led]
backend = "gpio"
line = "gpiochip0:0"
[commands]
allowed = ["ping", "service.restart", "service.logs"]
services = ["systemd-timesyncd.service"]
EOF

image/inject --image "$image" --agent "$agent" --config "$WORK/base.toml" \
    --first-boot "$WORK/picket.toml" >"$WORK/inject.log" 2>&1
if [[ $? -eq 0 ]]; then pass "image/inject into the built image"; else
    tail -n 20 "$WORK/inject.log"; fail "image/inject into the built image"; finish
fi

# The test's reporter: a unit that prints, on the serial console, what only
# the VM can see.
cat >"$WORK/picket-vmtest" <<'EOF'
#!/bin/sh
# Reports for image/tests/vm-boot.sh on the serial console.
say() { echo "PICKET-VMTEST $*" >/dev/ttyAMA0; }
i=0
while [ $i -lt 300 ] && ! systemctl -q is-active picket-agent; do sleep 1; i=$((i + 1)); done
pid=$(systemctl show -p MainPID --value picket-agent)
say "agent $(systemctl is-active picket-agent) restarts=$(systemctl show -p NRestarts --value picket-agent)"
say "config $(stat -c '%a %U %G' /etc/picket/agent.toml)"
say "firstboot $(test -e /boot/firmware/picket.toml && echo present || echo gone) on $(findmnt -n -o FSTYPE /boot/firmware)"
say "capbnd $(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/$pid/status)"
say "security $(systemd-analyze security picket-agent 2>/dev/null | tail -n 1)"
say "hotdir $(test -d /run/picket/queue-hot && echo present || echo missing)"
while :; do
    grep picket-agent /sys/kernel/debug/gpio | sed 's/^/PICKET-VMTEST gpio /' >/dev/ttyAMA0
    sleep 0.1
done
EOF
cat >"$WORK/picket-vmtest.service" <<'EOF'
[Unit]
Description=picket VM test reporter (serial console)
After=picket-agent.service

[Service]
ExecStart=/usr/local/sbin/picket-vmtest

[Install]
WantedBy=multi-user.target
EOF
read_partitions "$image"
fs=$(root_fs "$image")
{
    [[ -n $(ext_stat "$image" /usr/local/sbin) ]] || echo "mkdir /usr/local/sbin"
    echo "write $WORK/picket-vmtest /usr/local/sbin/picket-vmtest"
    echo "sif /usr/local/sbin/picket-vmtest mode 0100755"
    echo "write $WORK/picket-vmtest.service /etc/systemd/system/picket-vmtest.service"
    echo "symlink /etc/systemd/system/multi-user.target.wants/picket-vmtest.service /etc/systemd/system/picket-vmtest.service"
} >"$WORK/vmtest.cmds"
debugfs -w -f "$WORK/vmtest.cmds" "$fs" >/dev/null 2>&1

# The image's own kernel and initrd.
kernel=$(ext_request "$image" 'ls /boot' | tr -s ' ' '\n' | grep -m1 '^vmlinuz-')
initrd=$(ext_request "$image" 'ls /boot' | tr -s ' ' '\n' | grep -m1 '^initrd.img-')
ext_request "$image" "dump /boot/$kernel $WORK/vmlinuz" >/dev/null
ext_request "$image" "dump /boot/$initrd $WORK/initrd.img" >/dev/null
if [[ -s $WORK/vmlinuz && -s $WORK/initrd.img ]]; then
    pass "kernel $kernel and initrd ($(du -h "$WORK/initrd.img" | cut -f1)) read from the image"
else
    fail "kernel and initrd in the image's /boot"; finish
fi

# ---- boot -------------------------------------------------------------------

mosquitto_sub -h 127.0.0.1 -p "$port" -t "picket/v1/$device/#" -v -F '%U %t %p' >"$WORK/mqtt.log" 2>&1 &
PIDS+=($!)
sleep 1
power_on=$(date +%s.%N)
qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 2 -m 1024 -snapshot -no-reboot \
    -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
    -append "root=LABEL=rootfs rootwait console=ttyAMA0 panic=-1" \
    -drive "file=$image,format=raw,if=virtio" \
    -netdev user,id=net0 -device virtio-net-pci,netdev=net0 \
    -display none -monitor none -serial "file:$WORK/console.log" &
qemu=$!
PIDS+=($qemu)
log "VM powered on (qemu pid $qemu); console in $WORK/console.log"

# wait_for WHAT FILE PATTERN: wait until FILE has a line matching PATTERN;
# print the seconds since power-on of the first such line's arrival.
wait_for() {
    local deadline=$(($(date +%s) + WAIT_BOOT))
    while [[ $(date +%s) -lt $deadline ]]; do
        if grep -q -- "$3" "$2" 2>/dev/null; then
            return 0
        fi
        kill -0 "$qemu" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}
# Seconds from power-on to the first MQTT line matching PATTERN (its
# arrival time is mosquitto_sub's %U stamp).
mqtt_secs() {
    local at
    at=$(grep -m1 -- "$1" "$WORK/mqtt.log" | cut -d' ' -f1)
    awk -v a="$at" -v b="$power_on" 'BEGIN {printf "%.1f", a - b}'
}

if wait_for birth "$WORK/mqtt.log" "picket/v1/$device/state .*\"status\":\"online\""; then
    birth=$(mqtt_secs "/state .*\"online\"")
    pass "birth of $device (the first-boot device id) after ${birth} s"
else
    fail "birth of $device" "$(tail -n 5 "$WORK/console.log")"
fi
if wait_for telemetry "$WORK/mqtt.log" "picket/v1/$device/telemetry .*\"samples\""; then
    telemetry=$(mqtt_secs "/telemetry ")
    pass "telemetry of $device after ${telemetry} s (target <= $TARGET_SECS s from power-on: $(awk -v t="$telemetry" -v m=$TARGET_SECS 'BEGIN {print (t <= m) ? "met" : "MISSED"}'))"
else
    fail "telemetry of $device"
fi

# The serial line ends lines with \r\n.
console() { tr -d '\r' <"$WORK/console.log" | grep -a "^PICKET-VMTEST $1" | head -n 1 | cut -d' ' -f3-; }
if wait_for reporter "$WORK/console.log" "^PICKET-VMTEST hotdir"; then
    pass "test reporter ran: $(console agent)"
    got=$(console config)
    [[ $got == "600 root root" ]] && pass "/etc/picket/agent.toml is 0600 root:root" || fail "agent.toml mode" "$got"
    got=$(console firstboot)
    [[ $got == "gone on vfat" ]] && pass "picket.toml gone from the FAT boot partition" || fail "picket.toml removed" "$got"
    got=$(console capbnd)
    [[ $got == 0000000000000000 ]] && pass "capability bounding set empty" || fail "capability bounding set" "$got"
    got=$(console security)
    [[ $got == *"Overall exposure level"* ]] && pass "systemd-analyze security in the VM: ${got#*: }" || fail "systemd-analyze security" "$got"
    got=$(console hotdir)
    [[ $got == present ]] && pass "hot queue directory on /run/picket" || fail "hot queue directory" "$got"
else
    fail "test reporter on the serial console" "$(tail -n 20 "$WORK/console.log")"
fi

# The LED: after the birth, the line must be an output of picket-agent and
# take both levels (connected with an unsynchronised clock: 1 Hz blink).
sleep 5
gpio=$(tr -d '\r' <"$WORK/console.log" | grep -a '^PICKET-VMTEST gpio' | tail -n 40)
if grep -q 'out hi' <<<"$gpio" && grep -q 'out lo' <<<"$gpio"; then
    pass "LED on PL061 line 0 driven by picket-agent: $(grep -m1 'out' <<<"$gpio" | cut -d' ' -f3- | tr -s ' ')"
else
    fail "LED line read from /sys/kernel/debug/gpio" "$(tail -n 3 <<<"$gpio")"
fi

# ---- remote commands under the hardened unit ----------------------------------

send_command() {
    local id=$1 name=$2 args=$3 now
    now=$(($(date +%s) * 1000))
    mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "picket/v1/$device/cmd/$id" -m \
        "{\"v\":1,\"id\":\"$id\",\"device\":\"$device\",\"name\":\"$name\",\"args\":$args,\"issued\":$now,\"expires\":$((now + 300000))}"
    if wait_for "$id" "$WORK/mqtt.log" "/reply/$id .*\"state\":\"\(succeeded\|failed\|rejected\)\""; then
        grep -a "/reply/$id " "$WORK/mqtt.log" | grep -o '"state":"[a-z]*"' | tail -n 1
    fi
}
for c in "ping|{}" "service.restart|{\"unit\":\"systemd-timesyncd.service\"}" \
    "service.logs|{\"unit\":\"systemd-timesyncd.service\",\"lines\":5}"; do
    name=${c%%|*}
    state=$(send_command "vmtest-${name//./-}-$RANDOM" "$name" "${c#*|}")
    if [[ $state == '"state":"succeeded"' ]]; then
        pass "command $name succeeded under the hardened unit"
    else
        fail "command $name" "${state:-no final reply}; $(grep -a "/reply/vmtest-${name//./-}" "$WORK/mqtt.log" | tail -n 1 | cut -c1-300)"
    fi
done

kill "$qemu" 2>/dev/null
finish
