//! `system.info`: what the seed's `get_system_info` reported — hardware,
//! OS, kernel, architecture, network addresses — plus a current sample of
//! every metric the agent reads. Blocking (file reads, `systemctl`).

use std::ffi::CStr;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::sensors::clock::{Clock, SystemClock};
use crate::sensors::{self, SensorConfig, Sensors, identity};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Address {
    pub interface: String,
    pub address: String,
}

/// The report, as JSON text.
pub fn report(cfg: &SensorConfig, device: &str) -> String {
    let root = cfg.host_root.as_path();
    let mut sensors = Sensors::new(cfg.clone());
    let stamp = SystemClock::new(root).stamp();
    let (sample, _) = sensors.sample(&stamp);
    let body = json!({
        "device": device,
        "agent_version": crate::VERSION,
        "hostname": sensors::read_text(root, "/proc/sys/kernel/hostname").map(|s| s.trim().to_string()),
        "model": identity::model(root),
        "os": os_name(root),
        "kernel": sensors::read_text(root, "/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
        "arch": std::env::consts::ARCH,
        "boot_id": identity::boot_id(root),
        "clock_synced": stamp.sync,
        "addresses": addresses(),
        "metrics": sample,
    });
    serde_json::to_string_pretty(&body).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `PRETTY_NAME` of `/etc/os-release` (or `/usr/lib/os-release`).
fn os_name(root: &Path) -> Option<String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| sensors::read_text(root, p))
        .and_then(|text| pretty_name(&text))
}

fn pretty_name(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// IPv4 and IPv6 addresses of every interface but loopback.
fn addresses() -> Vec<Address> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        if name == "lo" {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr whose
        // family says which concrete type it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let address = match family {
            libc::AF_INET => {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).to_string()
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).to_string()
            }
            _ => continue,
        };
        out.push(Address {
            interface: name,
            address,
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(pretty_name("ID=x\n"), None);
    }

    #[test]
    fn report_is_json_with_every_section() {
        let cfg = SensorConfig::new("/");
        let v: serde_json::Value = serde_json::from_str(&report(&cfg, "pi-1")).unwrap();
        for key in [
            "hostname",
            "kernel",
            "arch",
            "addresses",
            "metrics",
            "os",
            "model",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["arch"], std::env::consts::ARCH);
        assert!(v["metrics"]["mem"].is_object(), "{}", v["metrics"]);
    }
}
