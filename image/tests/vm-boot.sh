#!/usr/bin/env bash
# Boot test of a picket image in QEMU's arm64 virt machine.
#
#   image/tests/vm-boot.sh [--image IMG] [--agent BIN]
#
# Builds the static aarch64 agent, its .deb and an image with image/build
# (or takes --image, made by image/build from the current .deb), starts a
# Mosquitto on a free port of 127.0.0.1 (the VM reaches it as 10.0.2.2
# through QEMU's user networking), and boots copies of the image with
# `qemu-system-aarch64 -M virt -cpu cortex-a53 -snapshot` on the image's own
# kernel and initrd, twice:
#
#   deb     the image as built: the agent and its enabled unit from the
#           package; a technician's picket.toml copied to the boot partition
#   inject  after image/inject (a base configuration whose broker does not
#           exist, the first-boot picket.toml pointing at the test broker)
#
# The first-boot file names a fresh device id, the test broker, the status
# LED on line 0 of the virt machine's PL061 GPIO controller, and allows
# ping, service.restart and service.logs. Each boot checks:
#   - the birth and telemetry of that device id arrive (so the first-boot
#     file was installed), with the time from power-on;
#   - inside the VM (image/tests/vm-reporter.sh, a unit printing on the
#     serial console): which unit file runs, enabled; agent.toml 0600;
#     picket.toml gone from the FAT partition; an empty capability bounding
#     set; the unit's systemd-analyze exposure; the hot queue directory;
#     what `picket-agent status` says the LED shows;
#   - the LED line, read from the VM's /sys/kernel/debug/gpio, is an output
#     of picket-agent and takes both levels once the agent is connected;
#   - remote commands under the hardened unit: ping, service.restart
#     (systemctl) and service.logs (journalctl) succeed;
#   - with --collector BIN (an arm64 picket-collector, e.g. built for
#     aarch64-unknown-linux-gnu): in the inject boot, the collector is
#     installed as its unit's header says, started under it, and its API
#     (forwarded to the host) lists the VM's agent.
#
# Ends with "N passed, N failed"; exit code 1 if anything failed. Needs
# root (image/build), qemu-system-arm, qemu-user-static registered with
# binfmt_misc, mmdebstrap, mosquitto, mosquitto-clients, cargo-deb.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
# shellcheck source=image/lib.sh
source image/lib.sh
PROG=vm-boot

image="" agent="" collector=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --image) image=${2:?--image needs a value}; shift 2 ;;
        --agent) agent=${2:?--agent needs a value}; shift 2 ;;
        --collector) collector=${2:?--collector needs a value}; shift 2 ;;
        *) echo "usage: image/tests/vm-boot.sh [--image IMG] [--agent BIN] [--collector BIN]" >&2; exit 2 ;;
    esac
done

# PICKET_VM_KEEP=1 keeps the work directory (images, logs) for a look.
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
    if [[ -n ${PICKET_VM_KEEP:-} ]]; then
        echo "kept: $WORK (images, console and MQTT logs)" >&2
    else
        rm -rf "$WORK"
    fi
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
        --output "$WORK/deb/" >"$WORK/deb.log" 2>&1 || { cat "$WORK/deb.log"; fail "cargo deb"; finish; }
    image_build_start=$(date +%s)
    image/build --out "$WORK/built.img" --deb "$WORK"/deb/picket-agent_*_arm64.deb \
        2>"$WORK/build.log" || { tail -n 30 "$WORK/build.log"; fail "image/build"; finish; }
    pass "image/build ($(($(date +%s) - image_build_start)) s)"
    image=$WORK/built.img
fi

# ---- broker, configuration, reporter ---------------------------------------

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
{
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port"
    # Mosquitto refuses to run as root unless told to.
    [[ $(id -u) -ne 0 ]] || printf 'user root\n'
} >"$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)

# The base configuration given to image/inject: a broker that does not
# exist. Only the first-boot file can make the agent reach the test's.
printf '[device]\nid = "not-this-one"\n[broker]\nurl = "mqtt://192.0.2.1:1883"\n' >"$WORK/base.toml"

# The status LED, by backend: line 0 of the virt machine's PL061 GPIO
# controller, or the Caps Lock LED of an emulated USB keyboard (the virt
# machine has no other LED class device).
LED_GPIO='[led]\nbackend = "gpio"\nline = "gpiochip0:0"\n'
LED_SYSFS='[led]\nbackend = "sysfs"\nsysfs_path = "/sys/class/leds/input1::capslock"\n'
# first_boot_toml DEVICE LED: what a technician would write on the boot
# partition.
first_boot_toml() {
    printf '[device]\nid = "%s"\n[broker]\nurl = "mqtt://10.0.2.2:%s"\n' "$1" "$port"
    printf '[payload]\nformat = "json"\n[sampling]\ninterval = "2s"\n'
    printf "$2"
    printf '[commands]\nallowed = ["ping", "service.restart", "service.logs"]\n'
    printf 'services = ["systemd-timesyncd.service"]\n'
}

# With --collector: the collector in the VM, under its unit, on the test's
# broker, its API forwarded to a free port of the host's loopback.
api_port="" api_token=vmtest-read-token-$RANDOM$RANDOM
if [[ -n $collector ]]; then
    api_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    printf '[broker]\nurl = "mqtt://10.0.2.2:%s"\nclient_id = "picket-collector-vmtest"\n' "$port" >"$WORK/collector.toml"
    printf '[http]\nlisten = "0.0.0.0:8080"\n[api]\nread_token = "%s"\n' "$api_token" >>"$WORK/collector.toml"
fi

# The test's reporter: a unit that prints, on the serial console, what only
# the VM can see.
cp image/tests/vm-reporter.sh "$WORK/picket-vmtest"
printf '%s\n' '[Unit]' 'Description=picket VM test reporter (serial console)' \
    'After=picket-agent.service' '' '[Service]' 'ExecStart=/usr/local/sbin/picket-vmtest' \
    '' '[Install]' 'WantedBy=multi-user.target' >"$WORK/picket-vmtest.service"

# add_reporter IMG: the reporter unit, enabled, in IMG's root file system.
add_reporter() {
    read_partitions "$1"
    {
        [[ -n $(ext_stat "$1" /usr/local/sbin) ]] || echo "mkdir /usr/local/sbin"
        echo "write $WORK/picket-vmtest /usr/local/sbin/picket-vmtest"
        echo "sif /usr/local/sbin/picket-vmtest mode 0100755"
        echo "write $WORK/picket-vmtest.service /etc/systemd/system/picket-vmtest.service"
        echo "symlink /etc/systemd/system/multi-user.target.wants/picket-vmtest.service /etc/systemd/system/picket-vmtest.service"
    } >"$WORK/vmtest.cmds"
    if [[ -n $collector && ${2:-} == with-collector ]]; then
        # Installed as the unit's header says; the reporter runs
        # systemd-sysusers and starts it, as an administrator would.
        {
            echo "write $collector /usr/bin/picket-collector"
            echo "sif /usr/bin/picket-collector mode 0100755"
            echo "write systemd/picket-collector.service /etc/systemd/system/picket-collector.service"
            [[ -n $(ext_stat "$1" /etc/sysusers.d) ]] || echo "mkdir /etc/sysusers.d"
            echo "write systemd/picket-collector.sysusers /etc/sysusers.d/picket-collector.conf"
            echo "write $WORK/collector.toml /etc/picket/collector.toml"
            echo "sif /etc/picket/collector.toml mode 0100644"
        } >>"$WORK/vmtest.cmds"
    fi
    debugfs -w -f "$WORK/vmtest.cmds" "$(root_fs "$1")" >/dev/null 2>&1
}

# The image's own kernel and initrd.
read_partitions "$image"
kernel=$(ext_request "$image" 'ls /boot' | tr -s ' ' '\n' | grep -m1 '^vmlinuz-')
initrd=$(ext_request "$image" 'ls /boot' | tr -s ' ' '\n' | grep -m1 '^initrd.img-')
ext_request "$image" "dump /boot/$kernel $WORK/vmlinuz" >/dev/null
ext_request "$image" "dump /boot/$initrd $WORK/initrd.img" >/dev/null
if [[ -s $WORK/vmlinuz && -s $WORK/initrd.img ]]; then
    pass "kernel $kernel and initrd ($(du -h "$WORK/initrd.img" | cut -f1)) read from the image"
else
    fail "kernel and initrd in the image's /boot"
    finish
fi

# ---- one boot ----------------------------------------------------------------

# boot_and_check LABEL IMG DEVICE UNIT LED: boot IMG, whose first-boot file
# names DEVICE and puts the LED on backend LED (gpio or sysfs), and whose
# agent should run from UNIT; check everything.
boot_and_check() {
    local label=$1 img=$2 device=$3 unit=$4 led=$5
    local mqtt=$WORK/$label.mqtt.log cons=$WORK/$label.console.log
    mosquitto_sub -h 127.0.0.1 -p "$port" -t "picket/v1/$device/#" -v -F '%U %t %p' >"$mqtt" 2>&1 &
    local sub=$!
    PIDS+=($sub)
    sleep 1
    local power_on
    power_on=$(date +%s.%N)
    qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 2 -m 1024 -snapshot -no-reboot \
        -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
        -append "root=LABEL=rootfs rootwait console=ttyAMA0 panic=-1" \
        -drive "file=$img,format=raw,if=virtio" \
        -netdev "user,id=net0${api_port:+,hostfwd=tcp:127.0.0.1:$api_port-:8080}" \
        -device virtio-net-pci,netdev=net0 -device qemu-xhci -device usb-kbd \
        -display none -monitor none -serial "file:$cons" &
    local qemu=$!
    PIDS+=($qemu)
    log "$label: VM powered on (qemu pid $qemu)"

    # wait_for FILE PATTERN: until FILE has a line matching PATTERN.
    wait_for() {
        local deadline=$(($(date +%s) + WAIT_BOOT))
        while [[ $(date +%s) -lt $deadline ]]; do
            tr -d '\r' <"$1" 2>/dev/null | grep -aq -- "$2" && return 0
            kill -0 "$qemu" 2>/dev/null || return 1
            sleep 0.5
        done
        return 1
    }
    # Seconds from power-on to the first MQTT line matching PATTERN (its
    # arrival as stamped by mosquitto_sub).
    mqtt_secs() {
        awk -v a="$(grep -a -m1 -- "$1" "$mqtt" | cut -d' ' -f1)" -v b="$power_on" \
            'BEGIN {printf "%.1f", a - b}'
    }
    # The reporter's lines, wherever they start: the serial line ends lines
    # with \r\n, and getty's login prompt may precede one on its line.
    reports() { tr -d '\r' <"$cons" | grep -ao 'PICKET-VMTEST .*'; }
    console() { reports | grep -a "^PICKET-VMTEST $1" | head -n 1 | cut -d' ' -f3-; }

    local got secs
    if wait_for "$mqtt" "picket/v1/$device/state .*\"status\":\"online\""; then
        pass "$label: birth of $device (the first-boot device id) $(mqtt_secs '/state .*"online"') s after power-on"
    else
        fail "$label: birth of $device" "$(tr -d '\r' <"$cons" | tail -n 8)"
    fi
    if wait_for "$mqtt" "picket/v1/$device/telemetry .*\"samples\""; then
        secs=$(mqtt_secs "/telemetry ")
        pass "$label: telemetry $secs s after power-on (target <= $TARGET_SECS s: $(awk -v t="$secs" -v m=$TARGET_SECS 'BEGIN {print (t <= m) ? "met" : "MISSED"}'))"
        echo "$label $secs s" >>"$WORK/times"
    else
        fail "$label: telemetry of $device"
    fi

    if wait_for "$cons" "PICKET-VMTEST led"; then
        pass "$label: reporter: agent $(console agent)"
        got=$(console unit)
        [[ $got == "$unit enabled" ]] && pass "$label: runs from $unit, enabled" || fail "$label: unit" "$got"
        got=$(console config)
        [[ $got == "600 root root" ]] && pass "$label: /etc/picket/agent.toml is 0600 root:root" || fail "$label: agent.toml mode" "$got"
        got=$(console firstboot)
        [[ $got == "gone on vfat" ]] && pass "$label: picket.toml gone from the FAT boot partition" || fail "$label: picket.toml removed" "$got"
        got=$(console capbnd)
        [[ $got == 0000000000000000 ]] && pass "$label: capability bounding set empty" || fail "$label: capability bounding set" "$got"
        got=$(console security)
        [[ $got == *"Overall exposure level"* ]] && pass "$label: systemd-analyze security in the VM: ${got#*: }" || fail "$label: systemd-analyze security" "$got"
        got=$(console hotdir)
        [[ $got == present ]] && pass "$label: hot queue directory on /run/picket" || fail "$label: hot queue directory" "$got"
        got=$(console led)
        [[ $got == "slow blink"* ]] && pass "$label: picket-agent status: LED $got" || fail "$label: LED pattern" "$got"
    else
        fail "$label: test reporter on the serial console" "$(tr -d '\r' <"$cons" | tail -n 20)"
    fi

    # The LED once connected blinks at 1 Hz (the VM's clock is not
    # NTP-synchronised): both levels within the last few seconds.
    sleep 3
    local seen
    case $led in
        gpio)
            # An output line of picket-agent, read from /sys/kernel/debug/gpio.
            seen=$(reports | grep -a '^PICKET-VMTEST gpio' | tail -n 40)
            if grep -q 'out hi' <<<"$seen" && grep -q 'out lo' <<<"$seen"; then
                pass "$label: LED on PL061 line 0 blinks, read back from /sys/kernel/debug/gpio: $(grep -m1 'out' <<<"$seen" | cut -d' ' -f3- | tr -s ' ' | sed 's/ out .*//')"
            else
                fail "$label: LED line read from /sys/kernel/debug/gpio" "$(tail -n 3 <<<"$seen")"
            fi
            ;;
        sysfs)
            # The LED class device taken over (trigger none), lit and dark.
            seen=$(reports | grep -a '^PICKET-VMTEST sysfs' | tail -n 40)
            if grep -q 'brightness [1-9][0-9]* trigger \[none\]' <<<"$seen" &&
                grep -q 'brightness 0 trigger \[none\]' <<<"$seen"; then
                pass "$label: sysfs LED input1::capslock blinks (trigger none), read back from /sys/class/leds"
            else
                fail "$label: sysfs LED read from /sys/class/leds" "$(tail -n 3 <<<"$seen")"
            fi
            ;;
    esac

    # The collector in the VM under its unit, when installed: running, its
    # exposure, and its API listing this VM's agent (agent -> the host's
    # broker -> the collector).
    if [[ -n $collector && $label == inject ]]; then
        got=$(console collector)
        [[ $got == active ]] && pass "$label: picket-collector.service active in the VM" ||
            fail "$label: picket-collector.service" "$got; $(console cstatus)"
        got=$(console csecurity)
        [[ $got == *"Overall exposure level"* ]] && pass "$label: collector systemd-analyze security in the VM: ${got#*: }" ||
            fail "$label: collector systemd-analyze security" "$got"
        local deadline=$(($(date +%s) + WAIT_BOOT)) body=""
        while [[ $(date +%s) -lt $deadline ]]; do
            body=$(curl -s -m 5 -H "Authorization: Bearer $api_token" "http://127.0.0.1:$api_port/api/devices" || true)
            [[ $body == *"\"$device\""* ]] && break
            sleep 1
        done
        [[ $body == *"\"$device\""* ]] && pass "$label: the collector's API (in the VM) lists $device" ||
            fail "$label: collector API lists $device" "${body:0:300}"
    fi

    # Remote commands under the hardened unit: systemctl and journalctl
    # with an empty capability bounding set.
    local c name state id now
    for c in "ping|{}" "service.restart|{\"unit\":\"systemd-timesyncd.service\"}" \
        "service.logs|{\"unit\":\"systemd-timesyncd.service\",\"lines\":5}"; do
        name=${c%%|*}
        id=vmtest-${name//./-}-$RANDOM
        now=$(($(date +%s) * 1000))
        mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "picket/v1/$device/cmd/$id" -m \
            "{\"v\":1,\"id\":\"$id\",\"device\":\"$device\",\"name\":\"$name\",\"args\":${c#*|},\"issued\":$now,\"expires\":$((now + 300000))}"
        state=""
        if wait_for "$mqtt" "/reply/$id .*\"state\":\"\(succeeded\|failed\|rejected\)\""; then
            state=$(grep -a "/reply/$id " "$mqtt" | grep -o '"state":"[a-z]*"' | tail -n 1)
        fi
        if [[ $state == '"state":"succeeded"' ]]; then
            pass "$label: command $name succeeded"
        else
            fail "$label: command $name" "${state:-no final reply}: $(grep -a "/reply/$id " "$mqtt" | tail -n 1 | cut -c1-300)"
        fi
    done

    kill "$qemu" "$sub" 2>/dev/null
    wait "$qemu" "$sub" 2>/dev/null
}

# ---- boot 1: the image as built: the agent from the .deb ------------------------

deb_img=$WORK/deb.img
cp --sparse=always "$image" "$deb_img"
read_partitions "$deb_img"
link=$(ext_link_target "$deb_img" /etc/systemd/system/multi-user.target.wants/picket-agent.service)
[[ $link == /lib/systemd/system/picket-agent.service ]] &&
    pass "deb: the package's unit is enabled in the built image" || fail "deb: unit enabled by the package" "link: '$link'"
got=$(ext_stat "$deb_img" /etc/picket/agent.toml)
[[ $got == "regular 0600 0 0" ]] && pass "deb: /etc/picket/agent.toml from the package, 0600" || fail "deb: packaged agent.toml" "$got"
got=$(ext_stat "$deb_img" /var/lib/picket)
[[ $got == "directory 0750 0 0" ]] && pass "deb: state directory /var/lib/picket, 0750" || fail "deb: state directory" "$got"
# A technician's picket.toml, copied to the boot partition as from a laptop.
device=vm-deb-$(date +%s)-$RANDOM
first_boot_toml "$device" "$LED_GPIO" >"$WORK/picket.toml"
mcopy -o -i "$(boot_fs "$deb_img")" "$WORK/picket.toml" ::/picket.toml
add_reporter "$deb_img"
boot_and_check deb "$deb_img" "$device" /lib/systemd/system/picket-agent.service gpio
rm -f "$deb_img"

# ---- boot 2: after image/inject --------------------------------------------------

inj_img=$WORK/inject.img
cp --sparse=always "$image" "$inj_img"
device=vm-inject-$(date +%s)-$RANDOM
first_boot_toml "$device" "$LED_SYSFS" >"$WORK/picket.toml"
if image/inject --image "$inj_img" --agent "$agent" --config "$WORK/base.toml" \
    --first-boot "$WORK/picket.toml" >"$WORK/inject.log" 2>&1; then
    pass "inject: image/inject into the built image"
    add_reporter "$inj_img" with-collector
    boot_and_check inject "$inj_img" "$device" /etc/systemd/system/picket-agent.service sysfs
else
    tail -n 20 "$WORK/inject.log"
    fail "inject: image/inject into the built image"
fi

[[ -f $WORK/times ]] && printf '\npower-on to first telemetry: %s\n' "$(paste -sd, "$WORK/times")"
finish
