# Shared by image/inject, image/build and their tests. Sourced, not run.
#
# Partitions of a disk image are reached at their byte offset, never
# through a loop device or a mount: e2fsprogs takes `IMAGE?offset=BYTES`
# for a file system inside a file, mtools takes `-i IMAGE@@BYTES`. So this
# runs without privileges beyond write access to the image file, in
# containers, and cannot leave a mount behind.

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf '%s: error: %s\n' "${PROG:-image}" "$*" >&2
    exit 1
}
usage_error() {
    printf '%s: %s\n' "${PROG:-image}" "$*" >&2
    usage >&2
    exit 2
}

# require COMMAND PACKAGE: fail with the package to install when missing.
require() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: apt-get install $2"
}

# A Raspberry Pi OS-shaped image: an MBR partition table, partition 1 FAT
# (the boot partition), partition 2 Linux (the ext4 root). Sets SECTOR_SIZE,
# BOOT_OFFSET, BOOT_SECTORS, ROOT_OFFSET, ROOT_SECTORS (bytes, sectors).
read_partitions() {
    local image=$1 dump label sector_size line
    dump=$(sfdisk --dump "$image" 2>/dev/null) ||
        die "$image: no partition table (sfdisk cannot read one): not a Raspberry Pi OS image"
    label=$(sed -n 's/^label: *//p' <<<"$dump")
    [[ $label == dos ]] ||
        die "$image: partition table is '${label:-none}', expected an MBR ('dos') one like Raspberry Pi OS images"
    sector_size=$(sed -n 's/^sector-size: *//p' <<<"$dump")
    sector_size=${sector_size:-512}
    local -a starts=() sizes=() types=()
    while IFS= read -r line; do
        [[ $line == *": start="* ]] || continue
        starts+=("$(sed -n 's/.*start= *\([0-9]*\).*/\1/p' <<<"$line")")
        sizes+=("$(sed -n 's/.*size= *\([0-9]*\).*/\1/p' <<<"$line")")
        types+=("$(sed -n 's/.*type= *\([0-9a-fA-F]*\).*/\1/p' <<<"$line")")
    done <<<"$dump"
    [[ ${#starts[@]} -ge 2 ]] ||
        die "$image: ${#starts[@]} partition(s), expected a FAT boot partition and an ext4 root partition"
    case ${types[0],,} in
        b | c | e | 6 | ef) ;;
        *) die "$image: partition 1 has type ${types[0]}, expected FAT (c, b or e): the boot partition" ;;
    esac
    [[ ${types[1],,} == 83 ]] ||
        die "$image: partition 2 has type ${types[1]}, expected 83 (Linux): the root partition"
    SECTOR_SIZE=$sector_size
    BOOT_OFFSET=$((starts[0] * sector_size))
    BOOT_SECTORS=${sizes[0]}
    ROOT_OFFSET=$((starts[1] * sector_size))
    ROOT_SECTORS=${sizes[1]}
}

# The image's root file system, as e2fsprogs names it.
root_fs() { printf '%s?offset=%s' "$1" "$ROOT_OFFSET"; }
# The image's boot partition, as mtools names it.
boot_fs() { printf '%s@@%s' "$1" "$BOOT_OFFSET"; }

# debugfs on the root file system, read-only: one request, its output on
# stdout, debugfs's banner and complaints dropped.
ext_request() {
    debugfs -R "$2" "$(root_fs "$1")" 2>/dev/null
}

# Print `TYPE MODE UID GID` of PATH in the root file system (MODE in octal,
# permission bits only), or nothing when it does not exist.
ext_stat() {
    ext_request "$1" "stat \"$2\"" | awk '
        /^Inode:/ { type = $4; mode = $6 }
        /^User:/ { uid = $2; gid = $4 }
        END { if (type != "") print type, mode, uid, gid }'
}

# Print the target of the symlink PATH (debugfs shows fast links inline).
ext_link_target() {
    ext_request "$1" "stat \"$2\"" | sed -n 's/^Fast link dest: "\(.*\)"$/\1/p'
}

# sha256 of the regular file PATH in the root file system.
ext_sha256() {
    ext_request "$1" "cat \"$2\"" | sha256sum | cut -d' ' -f1
}

# Whether the root file system's journal holds transactions to replay.
ext_needs_recovery() {
    dumpe2fs -h "$(root_fs "$1")" 2>/dev/null |
        grep -q '^Filesystem features:.*needs_recovery'
}

# sha256 of PATH on the boot partition.
fat_sha256() {
    mtype -i "$(boot_fs "$1")" "::$2" 2>/dev/null | sha256sum | cut -d' ' -f1
}
