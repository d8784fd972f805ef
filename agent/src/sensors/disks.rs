//! Space on every mounted real filesystem.
//!
//! Mounts come from init's mount table (`/proc/1/mounts`), which is the host's
//! even when the agent lives in a container sharing the host's pid namespace,
//! falling back to our own (`/proc/mounts`).

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use picket_protocol::Disk;

use super::{pct, read_text, under};

/// One line of a mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount: String,
    pub fs: String,
}

pub fn read(root: &Path) -> Vec<Disk> {
    let Some(table) = read_text(root, "/proc/1/mounts").or_else(|| read_text(root, "/proc/mounts"))
    else {
        return Vec::new();
    };
    real_mounts(&table)
        .into_iter()
        .filter_map(|m| {
            let space = statvfs(&under(root, &m.mount))?;
            Some(disk(m, space))
        })
        .collect()
}

/// Mounts worth reporting, first mount of each device only (later ones are
/// bind mounts of the same space).
pub fn real_mounts(table: &str) -> Vec<Mount> {
    let mut seen = HashSet::new();
    table
        .lines()
        .filter_map(parse_line)
        .filter(is_real)
        .filter(|m| seen.insert(m.device.clone()))
        .collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let mut words = line.split_whitespace();
    let device = unescape(words.next()?);
    let mount = unescape(words.next()?);
    let fs = words.next()?.to_string();
    mount
        .starts_with('/')
        .then_some(Mount { device, mount, fs })
}

/// Filesystems that hold no disk space of their own.
const PSEUDO: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "fuse.lxcfs",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "iso9660",
    "zram",
];

/// Network filesystems: `statvfs` on an unreachable server blocks the
/// sampler for minutes, and the space is not this box's anyway.
const NETWORK: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "fuse.sshfs",
    "ceph",
    "glusterfs",
];

/// Disk filesystems whose source is not a `/dev` node (pools, subvolumes).
const DISK_FS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "ntfs", "ntfs3", "fuseblk", "f2fs",
    "jfs", "reiserfs", "zfs", "bcachefs",
];

fn is_real(m: &Mount) -> bool {
    if PSEUDO.contains(&m.fs.as_str()) || NETWORK.contains(&m.fs.as_str()) {
        return false;
    }
    m.device.starts_with("/dev/") || DISK_FS.contains(&m.fs.as_str())
}

/// The kernel escapes space, tab, newline and backslash in mount tables as
/// three octal digits (`\040`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(byte) = bytes.get(i + 1..i + 4).and_then(octal) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Three octal digits as one byte; None past 0o377.
fn octal(digits: &[u8]) -> Option<u8> {
    digits.iter().try_fold(0u8, |acc, &d| {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        acc.checked_mul(8)?.checked_add(d - b'0')
    })
}

/// Bytes from `statvfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    pub used: u64,
    /// Available to unprivileged users (`f_bavail`).
    pub avail: u64,
}

fn statvfs(path: &Path) -> Option<Space> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is writable for the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::useless_conversion)] // the field widths differ per target
    let (blocks, bfree, bavail, frsize) = (
        u64::from(st.f_blocks),
        u64::from(st.f_bfree),
        u64::from(st.f_bavail),
        u64::from(st.f_frsize),
    );
    // A filesystem of no blocks is a pseudo filesystem that slipped through.
    if blocks == 0 {
        return None;
    }
    Some(Space {
        total: blocks.saturating_mul(frsize),
        used: blocks.saturating_sub(bfree).saturating_mul(frsize),
        avail: bavail.saturating_mul(frsize),
    })
}

fn disk(m: Mount, s: Space) -> Disk {
    Disk {
        mount: m.mount,
        fs: m.fs,
        total: s.total,
        used: s.used,
        free: s.avail,
        // Like `df`: the root-reserved blocks count neither as used nor free.
        pct: pct(s.used as f64, s.used as f64 + s.avail as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/root / ext4 rw,noatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=1800564k 0 0
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,nosuchsysfs 0 0
tmpfs /run tmpfs rw,nosuid 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
/dev/mmcblk0p1 /boot/firmware vfat rw,relatime 0 2
/dev/root /var/lib/docker/bind ext4 rw 0 0
overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0
/dev/loop0 /snap/core/1 squashfs ro 0 0
/dev/sda1 /media/usb\\040stick exfat rw 0 0
server:/export /mnt/nas nfs4 rw 0 0
rpool/data /data zfs rw 0 0
garbage
nodev relative ext4 rw 0 0
";

    #[test]
    fn keeps_real_filesystems_once() {
        let m = real_mounts(MOUNTS);
        let got: Vec<(&str, &str)> = m
            .iter()
            .map(|m| (m.mount.as_str(), m.fs.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/", "ext4"),
                ("/boot/firmware", "vfat"),
                ("/media/usb stick", "exfat"),
                ("/data", "zfs"),
            ]
        );
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/a\\040b\\011c\\134d\\012"), "/a b\tc\\d\n");
        assert_eq!(unescape("/bad\\9\\04"), "/bad\\9\\04");
        assert_eq!(unescape("\\777x"), "\\777x");
    }

    #[test]
    fn usage_like_df() {
        let m = Mount {
            device: "/dev/x".into(),
            mount: "/".into(),
            fs: "ext4".into(),
        };
        // 100 blocks, 20 free of which 10 available to users.
        let d = disk(
            m,
            Space {
                total: 100,
                used: 80,
                avail: 10,
            },
        );
        assert_eq!((d.total, d.used, d.free), (100, 80, 10));
        assert!((d.pct - 88.888).abs() < 0.01);
    }

    #[test]
    fn statvfs_of_missing_path_is_none() {
        assert_eq!(statvfs(Path::new("/nonexistent/picket")), None);
        let here = statvfs(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(here.total > 0 && here.used <= here.total);
    }

    #[test]
    fn prefers_init_mount_table() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/1")).unwrap();
        std::fs::write(root.join("proc/mounts"), "/dev/a / ext4 rw 0 0\n").unwrap();
        std::fs::write(root.join("proc/1/mounts"), "/dev/b /proc ext4 rw 0 0\n").unwrap();
        let d = read(root);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].mount, "/proc");
        assert!(read(&root.join("nothing")).is_empty());
    }
}
