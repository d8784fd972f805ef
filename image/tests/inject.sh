#!/usr/bin/env bash
# Tests of image/inject on synthetic Raspberry Pi OS-shaped images built
# here (sfdisk, mkfs.vfat, mkfs.ext4 -d; no loop device, no mount). What
# inject wrote is read back independently of inject's own checks: the root
# file system is copied out with debugfs rdump and looked at with the
# host's stat, readlink and sha256sum; the boot partition with mcopy.
#
#   image/tests/inject.sh [AGENT_BIN]
#
# AGENT_BIN defaults to the static aarch64 agent
# (target/aarch64-unknown-linux-musl/device/picket-agent, from cross/build);
# a missing binary fails the run. Ends with "N passed, N failed"; exit code
# 1 if anything failed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
INJECT=$ROOT/image/inject
AGENT=${1:-$ROOT/target/aarch64-unknown-linux-musl/device/picket-agent}
UNIT=$ROOT/systemd/picket-agent.service

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [[ -z ${2:-} ]] || printf '      %s\n' "$2"; }
# check NAME GOT WANT
check() { if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi; }
# check_has NAME TEXT NEEDLE
check_has() { if [[ $2 == *"$3"* ]]; then pass "$1"; else fail "$1" "'$3' not in: $(tail -n 3 <<<"$2")"; fi; }

finish() {
    printf '\n%d passed, %d failed\n' "$passed" "$failed"
    [[ $failed -eq 0 ]]
    exit $?
}

for tool in sfdisk mkfs.vfat mkfs.ext4 debugfs mcopy; do
    command -v "$tool" >/dev/null || { fail "tool $tool installed (apt-get install fdisk dosfstools e2fsprogs mtools)"; finish; }
done
if [[ ! -x $AGENT ]]; then
    fail "agent binary $AGENT exists (build it: cross/build --target aarch64-unknown-linux-musl)"
    dirimg=$WORK/dir.img
make_image "$dirimg"
debugfs -w -R "mkdir /usr/bin/picket-agent" "$dirimg?offset=$ROOT_OFFSET" >/dev/null 2>&1
refused "a directory where the agent goes" 1 "/usr/bin/picket-agent exists and is a directory" "$dirimg" \
    --image "$dirimg" --agent "$AGENT" --config "$WORK/agent.toml"

finish
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

BOOT_START=8192        # sectors, as Raspberry Pi OS
BOOT_SECTORS=131072    # 64 MiB (Pi OS: 512 MiB)
ROOT_START=$((BOOT_START + BOOT_SECTORS))
ROOT_SECTORS=262144    # 128 MiB
ROOT_OFFSET=$((ROOT_START * 512))
BOOT_OFFSET=$((BOOT_START * 512))

# An ELF header saying "aarch64" (e_machine 183), as the image's /usr/bin/dash.
elf_aarch64() {
    printf '\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    head -c 44 /dev/zero
}

# make_image PATH: a sparse image partitioned like Raspberry Pi OS, with a
# small Debian-like root file system.
make_image() {
    local img=$1 tree
    tree=$(mktemp -d "$WORK/tree.XXXX")
    mkdir -p "$tree"/usr/bin "$tree"/etc/systemd/system/multi-user.target.wants \
        "$tree"/boot/firmware "$tree"/var/lib
    ln -s usr/bin "$tree/bin"
    elf_aarch64 >"$tree/usr/bin/dash"
    chmod 0755 "$tree/usr/bin/dash"
    printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n' >"$tree/etc/os-release"
    ln -s /lib/systemd/system/ssh.service "$tree/etc/systemd/system/multi-user.target.wants/ssh.service"
    truncate -s $(((ROOT_START + ROOT_SECTORS) * 512)) "$img"
    printf 'label: dos\nstart=%d, size=%d, type=c\nstart=%d, size=%d, type=83\n' \
        "$BOOT_START" "$BOOT_SECTORS" "$ROOT_START" "$ROOT_SECTORS" | sfdisk -q "$img"
    mkfs.vfat -F 32 -n bootfs --offset "$BOOT_START" "$img" $((BOOT_SECTORS / 2)) >/dev/null 2>&1
    printf 'console=serial0,115200 root=LABEL=rootfs\n' >"$WORK/cmdline.txt"
    mcopy -i "$img@@$BOOT_OFFSET" "$WORK/cmdline.txt" ::/cmdline.txt
    mkfs.ext4 -q -F -L rootfs -E "offset=$ROOT_OFFSET,root_owner=0:0" -d "$tree" \
        "$img" $((ROOT_SECTORS / 2))k
}

# dump IMG DIR: copy the root file system's /etc and /usr/bin out with their
# modes, owners and symlinks.
dump() {
    mkdir -p "$2"
    debugfs -R "rdump /etc /usr/bin $2" "$1?offset=$ROOT_OFFSET" >/dev/null 2>&1
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
fs_free() {
    dumpe2fs -h "$1?offset=$ROOT_OFFSET" 2>/dev/null |
        awk -F: '/^Free (blocks|inodes):/ {gsub(/ /, "", $2); printf "%s ", $2}'
}

cat >"$WORK/agent.toml" <<'EOF'
[broker]
url = "mqtts://broker.example:8883"
EOF
cat >"$WORK/picket.toml" <<'EOF'
[device]
id = "club-cesson-01"
[broker]
url = "mqtts://broker.example:8883"
EOF

# ---- a first injection: every file, mode, owner, symlink, checksum -------

img=$WORK/pi.img
make_image "$img"
out=$("$INJECT" --image "$img" --agent "$AGENT" --config "$WORK/agent.toml" \
    --first-boot "$WORK/picket.toml" 2>&1)
check "inject succeeds" "$?" 0
check_has "inject prints its summary" "$out" "read back and verified"
check_has "the summary lists the agent" "$out" "/usr/bin/picket-agent"

d=$WORK/dump1
dump "$img" "$d"
check "agent: mode, owner" "$(stat -c '%a %u %g' "$d/bin/picket-agent")" "755 0 0"
check "agent: content" "$(sha "$d/bin/picket-agent")" "$(sha "$AGENT")"
check "/etc/picket: mode, owner" "$(stat -c '%a %u %g' "$d/etc/picket")" "755 0 0"
check "agent.toml: mode, owner" "$(stat -c '%a %u %g' "$d/etc/picket/agent.toml")" "600 0 0"
check "agent.toml: content" "$(sha "$d/etc/picket/agent.toml")" "$(sha "$WORK/agent.toml")"
unit_path=$d/etc/systemd/system/picket-agent.service
check "unit: mode, owner" "$(stat -c '%a %u %g' "$unit_path")" "644 0 0"
check "unit: content" "$(sha "$unit_path")" "$(sha "$UNIT")"
link=$d/etc/systemd/system/multi-user.target.wants/picket-agent.service
check "enable symlink: is a symlink" "$(stat -c '%F' "$link")" "symbolic link"
check "enable symlink: target" "$(readlink "$link")" "/etc/systemd/system/picket-agent.service"
check "existing enable symlinks kept" \
    "$(readlink "$d/etc/systemd/system/multi-user.target.wants/ssh.service")" "/lib/systemd/system/ssh.service"

mcopy -n -i "$img@@$BOOT_OFFSET" ::/picket.toml "$WORK/fat-picket.toml" 2>/dev/null
check "boot partition: picket.toml present" "$?" 0
check "picket.toml: the first-boot file, after the header" \
    "$(grep -v '^#' "$WORK/fat-picket.toml" | sed '/./,$!d')" "$(cat "$WORK/picket.toml")"
check_has "picket.toml: the header says what it is" "$(head -n 3 "$WORK/fat-picket.toml")" "first-boot configuration"
mcopy -n -i "$img@@$BOOT_OFFSET" ::/cmdline.txt "$WORK/fat-cmdline.txt" 2>/dev/null
check "boot partition: other files untouched" "$(sha "$WORK/fat-cmdline.txt")" "$(sha "$WORK/cmdline.txt")"
e2fsck -fn "$img?offset=$ROOT_OFFSET" >/dev/null 2>&1
check "root file system clean after inject (e2fsck -n)" "$?" 0

# ---- a second injection over the first: the same result ------------------

free1=$(fs_free "$img")
fat1=$(sha "$WORK/fat-picket.toml")
"$INJECT" --image "$img" --agent "$AGENT" --config "$WORK/agent.toml" \
    --first-boot "$WORK/picket.toml" >/dev/null 2>&1
check "second inject succeeds" "$?" 0
d2=$WORK/dump2
dump "$img" "$d2"
same=$(cd "$d" && find . -printf '%p %y %m %U %G %l\n' | sort | sha256sum)
same2=$(cd "$d2" && find . -printf '%p %y %m %U %G %l\n' | sort | sha256sum)
check "second inject: same files, types, modes, owners, links" "$same2" "$same"
check "second inject: same agent" "$(sha "$d2/bin/picket-agent")" "$(sha "$AGENT")"
check "second inject: no space or inode leaked" "$(fs_free "$img")" "$free1"
check "second inject: one enable symlink" \
    "$(debugfs -R 'ls -l /etc/systemd/system/multi-user.target.wants' "$img?offset=$ROOT_OFFSET" 2>/dev/null | grep -c 'picket-agent.service')" 1
mcopy -n -o -i "$img@@$BOOT_OFFSET" ::/picket.toml "$WORK/fat-picket2.toml" 2>/dev/null
check "second inject: same picket.toml" "$(sha "$WORK/fat-picket2.toml")" "$fat1"
check "second inject: one picket.toml on the boot partition" \
    "$(mdir -b -i "$img@@$BOOT_OFFSET" ::/ 2>/dev/null | grep -ci 'picket.toml')" 1
e2fsck -fn "$img?offset=$ROOT_OFFSET" >/dev/null 2>&1
check "root file system clean after the second inject" "$?" 0

# A new agent over the old one replaces it.
printf 'more' | cat "$AGENT" - >"$WORK/agent-v2"
chmod 0755 "$WORK/agent-v2"
"$INJECT" --image "$img" --agent "$WORK/agent-v2" --config "$WORK/agent.toml" >/dev/null 2>&1
check "a new agent replaces the old one: exit code" "$?" 0
d3=$WORK/dump3
dump "$img" "$d3"
check "a new agent replaces the old one: content" "$(sha "$d3/bin/picket-agent")" "$(sha "$WORK/agent-v2")"
mcopy -n -o -i "$img@@$BOOT_OFFSET" ::/picket.toml "$WORK/fat-picket3.toml" 2>/dev/null
check "without --first-boot, picket.toml is the --config file" \
    "$(grep -v '^#' "$WORK/fat-picket3.toml" | sed '/./,$!d')" "$(cat "$WORK/agent.toml")"

# ---- refusals: nothing written -------------------------------------------

# refused NAME WANT_CODE NEEDLE IMG ARGS...: inject fails with that exit code
# and message, and the image is byte for byte unchanged.
refused() {
    local name=$1 code=$2 needle=$3 image=$4
    shift 4
    local before after out rc
    before=$([[ -f $image ]] && sha "$image")
    out=$("$INJECT" "$@" 2>&1)
    rc=$?
    after=$([[ -f $image ]] && sha "$image")
    if [[ $rc -eq $code && $out == *"$needle"* && $before == "$after" ]]; then
        pass "$name"
    else
        fail "$name" "exit $rc (want $code), image $([[ $before == "$after" ]] && echo unchanged || echo CHANGED), output: $(tail -n 2 <<<"$out")"
    fi
}

rec=$WORK/recovery.img
make_image "$rec"
debugfs -w -R "feature needs_recovery" "$rec?offset=$ROOT_OFFSET" >/dev/null 2>&1
refused "a journal that needs recovery is refused" 1 "needs_recovery" "$rec" \
    --image "$rec" --agent "$AGENT" --config "$WORK/agent.toml"
# The refusal says how to replay the journal; doing so makes it acceptable.
hint=$("$INJECT" --image "$rec" --agent "$AGENT" --config "$WORK/agent.toml" 2>&1 | sed -n 's/.*shut it down cleanly): //p')
(cd "$WORK" && bash -c "$hint") >/dev/null 2>&1
check "the suggested journal replay works (exit code)" "$?" 0
rm -f "$WORK/root.img"
"$INJECT" --image "$rec" --agent "$AGENT" --config "$WORK/agent.toml" >/dev/null 2>&1
check "after the suggested replay, inject succeeds" "$?" 0

clean=$WORK/clean.img
make_image "$clean"
refused "missing --agent: usage, exit 2" 2 "--agent is required" "$clean" \
    --image "$clean" --config "$WORK/agent.toml"
refused "unknown argument: usage, exit 2" 2 "unknown argument: --bogus" "$clean" \
    --image "$clean" --agent "$AGENT" --config "$WORK/agent.toml" --bogus
refused "a missing image" 1 "no such file" "$clean" \
    --image "$WORK/nope.img" --agent "$AGENT" --config "$WORK/agent.toml"
cp "$clean" "$WORK/pi.img.xz"
refused "a compressed image" 1 "decompress it first" "$WORK/pi.img.xz" \
    --image "$WORK/pi.img.xz" --agent "$AGENT" --config "$WORK/agent.toml"
printf '#!/bin/sh\n' >"$WORK/script"
refused "an agent that is not an executable" 1 "not an ELF executable" "$clean" \
    --image "$clean" --agent "$WORK/script" --config "$WORK/agent.toml"
refused "an agent for another machine" 1 "not ARM" "$clean" \
    --image "$clean" --agent /bin/true --config "$WORK/agent.toml"
printf '[broker\n' >"$WORK/bad.toml"
if python3 -c 'import tomllib' 2>/dev/null; then
    refused "a configuration that is not TOML" 1 "not valid TOML" "$clean" \
        --image "$clean" --agent "$AGENT" --config "$WORK/bad.toml"
fi
truncate -s 64M "$WORK/blank.img"
refused "an image without a partition table" 1 "no partition table" "$WORK/blank.img" \
    --image "$WORK/blank.img" --agent "$AGENT" --config "$WORK/agent.toml"
# partition_refused WHAT WANT SIZE SFDISK-SCRIPT: a blank image of SIZE with
# that partition table (and nothing in it) is refused with WANT.
partition_refused() {
    local img
    img=$WORK/$(tr -c 'a-z0-9\n' '-' <<<"$1").img
    truncate -s "$3" "$img"
    printf '%b' "$4" | sfdisk -q "$img"
    refused "$1" 1 "$2" "$img" --image "$img" --agent "$AGENT" --config "$WORK/agent.toml"
}
partition_refused "a GPT image" "expected an MBR" 64M 'label: gpt\nsize=16M\nsize=32M\n'
partition_refused "partition 1 not FAT" "partition 1 has type 83" 64M \
    'label: dos\nstart=2048, size=32768, type=83\nstart=34816, type=c\n'
partition_refused "an unformatted root partition" "not an ext2/3/4 file system" 200M \
    'label: dos\nstart=8192, size=131072, type=c\nstart=139264, type=83\n'

dirimg=$WORK/dir.img
make_image "$dirimg"
debugfs -w -R "mkdir /usr/bin/picket-agent" "$dirimg?offset=$ROOT_OFFSET" >/dev/null 2>&1
refused "a directory where the agent goes" 1 "/usr/bin/picket-agent exists and is a directory" "$dirimg" \
    --image "$dirimg" --agent "$AGENT" --config "$WORK/agent.toml"

finish
