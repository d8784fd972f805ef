//! Per-interface counters from `/proc/net/dev`.

use std::path::Path;

use picket_protocol::NetIf;

use super::read_text;

/// Every interface not in `exclude`; None when the file is unreadable.
pub fn read(root: &Path, exclude: &[String]) -> Option<Vec<NetIf>> {
    let text = read_text(root, "/proc/net/dev")?;
    Some(
        parse(&text)
            .into_iter()
            .filter(|n| !exclude.contains(&n.name))
            .collect(),
    )
}

/// Two header lines, then `  eth0: rx(8 fields) tx(8 fields)`. Old kernels
/// print no space after the colon once the byte counter is wide, so split on
/// the colon rather than on whitespace. Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<NetIf> {
    text.lines().filter_map(line).collect()
}

fn line(line: &str) -> Option<NetIf> {
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('|') {
        return None;
    }
    let mut f = [0u64; 16];
    let mut count = 0;
    for (slot, word) in f.iter_mut().zip(rest.split_whitespace()) {
        *slot = word.parse().ok()?;
        count += 1;
    }
    if count < 12 {
        return None;
    }
    Some(NetIf {
        name: name.to_string(),
        rx_bytes: f[0],
        rx_packets: f[1],
        rx_errors: f[2],
        rx_dropped: f[3],
        tx_bytes: f[8],
        tx_packets: f[9],
        tx_errors: f[10],
        tx_dropped: f[11],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     789    0    0    0     0          0         0   123456     789    0    0    0     0       0          0
  eth0: 98765432  120000    1    2    0     0          0       300 12345678   90000    3    4    0     0       0          0
 wlan0:4294967296 7 0 0 0 0 0 0 5 6 0 0 0 0 0 0
";

    #[test]
    fn parses_every_interface() {
        let n = parse(DEV);
        assert_eq!(n.len(), 3);
        let eth = &n[1];
        assert_eq!(eth.name, "eth0");
        assert_eq!(
            (eth.rx_bytes, eth.rx_packets, eth.rx_errors, eth.rx_dropped),
            (98765432, 120000, 1, 2)
        );
        assert_eq!(
            (eth.tx_bytes, eth.tx_packets, eth.tx_errors, eth.tx_dropped),
            (12345678, 90000, 3, 4)
        );
        assert_eq!(
            (n[2].name.as_str(), n[2].rx_bytes, n[2].tx_bytes),
            ("wlan0", 4294967296, 5)
        );
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let text = "eth0: 1 2 3\nbad line\n: 1 2 3 4 5 6 7 8 9 10 11 12\n\
x y: 1 2 3 4 5 6 7 8 9 10 11 12\nwlan0: 1 2 3 4 5 6 7 8 9 10 11 -12\n\
usb0: 1 2 3 4 5 6 7 8 9 10 11 12\n";
        let n = parse(text);
        assert_eq!(n.len(), 1);
        assert_eq!((n[0].name.as_str(), n[0].tx_dropped), ("usb0", 12));
        assert!(parse("\u{0}\u{ff}").is_empty());
    }
}
