//! The engine's per-message decoding cost, alone: 5,000 telemetry messages
//! of the simulator's fleet (1,000 devices x 5 samples, CBOR as the agent
//! sends them) decoded five times over, and optionally range-checked
//! (`picket_protocol::check`, as the engine does before taking anything
//! from a message) or flattened into points as the engine does. Prints
//! the mean time per message.
//!
//! Wall time on a shared machine moves by ±20% from run to run; the
//! instruction count does not, so compare changes with
//! `valgrind --tool=cachegrind --cache-sim=no` on each mode and subtract
//! `none` (which builds the messages and decodes nothing):
//!
//! ```text
//! cargo build --release -p picket-collector --example decode_bench
//! target/release/examples/decode_bench decode|check|flatten|none
//! ```

use std::time::Instant;

use anyhow::Context;
use picket_collector::model::{MetricNames, flatten};
use picket_collector::simulate::device::{Record, SimDevice};
use picket_protocol::{DeviceId, Format, Telemetry, decode, encode};

const DEVICES: usize = 1_000;
const SAMPLES: u64 = 5;
const ROUNDS: usize = 5;
const T0: u64 = 1_700_000_000_000;

fn main() -> anyhow::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "decode".into());
    let rounds = match mode.as_str() {
        "decode" | "check" | "flatten" => ROUNDS,
        "none" => 0,
        other => anyhow::bail!("unknown mode {other:?}: decode, check, flatten or none"),
    };
    let mut messages = Vec::with_capacity(DEVICES * SAMPLES as usize);
    for i in 0..DEVICES {
        let id = DeviceId::new(format!("pi-{i:05}"))?;
        let mut device = SimDevice::new(id.clone(), i, 7, None, T0);
        for k in 0..SAMPLES {
            let samples = device
                .tick(T0 + k * 1_000)
                .records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Sample(s) => Some(*s),
                    Record::Event(_) => None,
                })
                .collect();
            let telemetry = Telemetry {
                v: 1,
                device: id.clone(),
                samples,
            };
            messages.push(encode(&telemetry, Format::Cbor)?);
        }
    }
    let bytes: usize = messages.iter().map(Vec::len).sum();

    let mut names = MetricNames::default();
    let mut points = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        for m in &messages {
            let t: Telemetry = decode(m, 1 << 20).context("decoding")?;
            if mode == "check" {
                picket_protocol::check(&t).context("checking")?;
            }
            if mode == "flatten" {
                for s in &t.samples {
                    points += flatten(s, &mut names).len();
                }
            }
        }
    }
    let decoded = (rounds * messages.len()).max(1);
    println!(
        "{mode}: {} messages of {} bytes on average, {:.0} ns per message, {points} points",
        messages.len(),
        bytes / messages.len(),
        start.elapsed().as_nanos() as f64 / decoded as f64
    );
    Ok(())
}
