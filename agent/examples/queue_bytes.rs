//! Sums the payloads of the records a queue directory holds: the "payload
//! bytes" that `bench/write-amplification.sh` divides the disk writes by.
//!
//! Run it only after the agent that owned the directory has stopped. It opens
//! the queue with the current boot id, so a cleanly closed queue is taken as
//! this boot's and nothing is skipped or recovered.
//!
//! Prints one line: `records=N payload_bytes=B`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use picket_agent::queue::{Queue, QueueConfig};

#[derive(Parser)]
struct Args {
    /// The queue directory.
    dir: PathBuf,
    /// Count only records stamped at or after this unix time (ms), so the
    /// sum covers the same window as the write counters.
    #[arg(long, default_value_t = 0)]
    since_ms: u64,
    /// ...and before this one.
    #[arg(long, default_value_t = u64::MAX)]
    until_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .context("cannot read the boot id")?;
    let mut cfg = QueueConfig::new(&args.dir);
    // Opening must never enforce a cap smaller than what the agent wrote.
    cfg.max_bytes = 1 << 40;
    let (mut queue, _) = Queue::open(cfg, boot.trim())
        .with_context(|| format!("cannot open the queue in {}", args.dir.display()))?;

    let (mut records, mut bytes) = (0u64, 0u64);
    let mut from = 0;
    loop {
        let batch = queue.read(from, 10_000, usize::MAX)?;
        let Some(last) = batch.last() else { break };
        from = last.seq + 1;
        for r in batch
            .iter()
            .filter(|r| (args.since_ms..args.until_ms).contains(&r.ts_ms))
        {
            records += 1;
            bytes += r.payload.len() as u64;
        }
    }
    println!("records={records} payload_bytes={bytes}");
    Ok(())
}
