//! History storage at fleet scale: fills a database as the collector would
//! (time order, every device in turn, 500 samples per transaction), then
//! measures ingest into the full database, 24 h queries of one metric of one
//! device (raw and in 5-minute steps, with a warm and a cold page cache),
//! commit cost with `synchronous = FULL` and `NORMAL`, pruning, the
//! size on disk and the time to open it (its integrity check). Used by `bench/history-query.sh`; prints `key=value` lines.
//!
//! A full fleet (1,000 devices x 20 metrics x 24 h every 10 s) is 173M
//! points. `--targets` devices get all 20 metrics for the whole day; the
//! others `--other-metrics` each, so the table holds a realistic number of
//! rows from a realistic number of devices, interleaved in time the way the
//! collector writes them, without taking an hour to build. The queried
//! series are complete; what the rest of the fleet changes is how many rows
//! and pages surround them, which is what the query cost must not depend on.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use picket_collector::history::{self, Durability, Reader, SampleRows, WriteBatch, Writer};
use picket_collector::model::{Metric, Millis, Point};
use picket_protocol::DeviceId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The 20 series of a typical Pi.
const METRICS: [&str; 20] = [
    "cpu",
    "load.1",
    "load.5",
    "load.15",
    "mem.pct",
    "mem.used",
    "mem.avail",
    "swap.pct",
    "uptime",
    "disk.pct:/",
    "disk.free:/",
    "net.rx_bytes:eth0",
    "net.tx_bytes:eth0",
    "net.errors:eth0",
    "temp",
    "temp:cpu-thermal",
    "throttle.uv",
    "throttle.throttled",
    "service:nginx.service",
    "agent.queue_records",
];

const T0: Millis = 1_700_000_000_000;
const INTERVAL: Millis = 10_000;
const DAY: Millis = 86_400_000;
const BATCH: usize = 500;

#[derive(Parser)]
struct Args {
    /// An empty directory for the database.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    /// Devices with all 20 metrics for the whole day: the ones queried.
    #[arg(long, default_value_t = 10)]
    targets: usize,
    /// Metrics per sample of the other devices.
    #[arg(long, default_value_t = 4)]
    other_metrics: usize,
    /// Hours of history before the measured ingest.
    #[arg(long, default_value_t = 24)]
    hours: u64,
    #[arg(long, default_value_t = 100)]
    queries: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.targets >= 1 && args.targets <= args.devices,
        "--targets must be between 1 and --devices"
    );
    anyhow::ensure!(
        args.other_metrics <= METRICS.len(),
        "--other-metrics is at most 20"
    );
    let path = args.dir.join("history.db");
    let devices: Vec<DeviceId> = (0..args.devices)
        .map(|i| DeviceId::new(format!("pi-{i:05}")))
        .collect::<Result<_, _>>()?;
    let metrics: Vec<Metric> = METRICS.iter().map(|m| Metric::new(m)).collect();
    let mut rng = StdRng::seed_from_u64(7);
    println!("sqlite={}", rusqlite::version());
    println!("devices={}", args.devices);
    println!("targets={}", args.targets);
    println!("other_metrics={}", args.other_metrics);
    println!("hours={}", args.hours);

    let (mut writer, _) = history::open(&path).context("open")?;
    let ticks = args.hours * 3_600_000 / INTERVAL;
    let width = |d: usize| {
        if d < args.targets {
            METRICS.len()
        } else {
            args.other_metrics
        }
    };
    let fill = ingest(&mut writer, &devices, &metrics, 0..ticks, width, &mut rng)?;
    println!("fill_points={}", fill.points);
    println!("fill_secs={:.1}", fill.secs);
    println!("fill_points_per_sec={:.0}", fill.points as f64 / fill.secs);

    // Ingest into the full table: the next 10 minutes of every device with
    // all 20 metrics, the steady state of a real fleet.
    let live = ingest(
        &mut writer,
        &devices,
        &metrics,
        ticks..ticks + 60,
        |_| METRICS.len(),
        &mut rng,
    )?;
    println!("ingest_samples={}", live.samples);
    println!("ingest_points={}", live.points);
    println!(
        "ingest_samples_per_sec={:.0}",
        live.samples as f64 / live.secs
    );
    println!(
        "ingest_points_per_sec={:.0}",
        live.points as f64 / live.secs
    );
    println!("ingest_commit_ms_p50={:.2}", pct(&live.commits, 50));
    println!("ingest_commit_ms_p99={:.2}", pct(&live.commits, 99));
    let end = T0 + (ticks + 60) * INTERVAL;
    drop(writer);
    checkpoint(&path)?;
    let db_bytes = std::fs::metadata(&path)?.len();
    let points = fill.points + live.points;
    println!("db_bytes={db_bytes}");
    println!("samples={}", fill.samples + live.samples);
    println!("points={points}");
    println!("bytes_per_point={:.1}", db_bytes as f64 / points as f64);

    // Opening for writing runs SQLite's quick_check over the whole file
    // (a damaged database is refused at start): its cost, from a cold and
    // a warm page cache.
    for cache in ["cold", "warm"] {
        if cache == "cold" {
            evict(&path)?;
        }
        let started = Instant::now();
        let opened = history::open(&path)?;
        println!("open_{cache}_ms={:.0}", ms(started.elapsed()));
        drop(opened);
    }

    let reader = Reader::open(&path)?;
    let from = end - DAY;
    for (name, step) in [("raw", None), ("step5m", Some(300_000))] {
        let mut warm = Vec::new();
        let mut cold = Vec::new();
        let mut points = 0;
        for _ in 0..args.queries {
            let device = &devices[rng.random_range(0..args.targets)];
            let metric = &metrics[rng.random_range(0..metrics.len())];
            // Cold: no page of the file in the OS cache, a new connection
            // (an empty SQLite cache).
            evict(&path)?;
            let fresh = Reader::open(&path)?;
            let started = Instant::now();
            let got = fresh.history(device, metric, from, end, step, 100_000)?;
            cold.push(ms(started.elapsed()));
            // Warm: the same query again on the long-lived reader.
            reader.history(device, metric, from, end, step, 100_000)?;
            let started = Instant::now();
            let again = reader.history(device, metric, from, end, step, 100_000)?;
            warm.push(ms(started.elapsed()));
            anyhow::ensure!(got == again, "two reads of {device} {metric} differ");
            points += got.len();
        }
        println!("query_{name}_points={}", points / args.queries);
        println!("query_{name}_warm_ms_p50={:.2}", pct(&warm, 50));
        println!("query_{name}_warm_ms_p99={:.2}", pct(&warm, 99));
        println!("query_{name}_cold_ms_p50={:.2}", pct(&cold, 50));
        println!("query_{name}_cold_ms_p99={:.2}", pct(&cold, 99));
    }
    let started = Instant::now();
    let n = reader.metrics_of(&devices[0])?.len();
    println!("metrics_of_ms={:.2}", ms(started.elapsed()));
    drop(reader);
    anyhow::ensure!(n == METRICS.len(), "metrics_of found {n} metrics");

    // Retention: drop the first hour in bounded transactions.
    let (mut writer, _) = history::open(&path)?;
    let mut calls = Vec::new();
    let mut pruned = 0;
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let n = writer.prune(T0 + 3_600_000, 5_000)?;
        calls.push(ms(t.elapsed()));
        pruned += n;
        if n < 5_000 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("prune_rows={pruned}");
    println!("prune_rows_per_sec={:.0}", pruned as f64 / secs);
    println!("prune_call_ms_max={:.1}", pct(&calls, 100));
    drop(writer);

    durability(&args.dir, &devices, &metrics, &mut rng)?;
    Ok(())
}

struct Ingested {
    samples: usize,
    points: usize,
    secs: f64,
    commits: Vec<f64>,
}

/// Write `ticks` of samples, every device at each tick, `BATCH` samples per
/// commit.
fn ingest(
    writer: &mut Writer,
    devices: &[DeviceId],
    metrics: &[Metric],
    ticks: std::ops::Range<u64>,
    width: impl Fn(usize) -> usize,
    rng: &mut StdRng,
) -> anyhow::Result<Ingested> {
    let mut out = Ingested {
        samples: 0,
        points: 0,
        secs: 0.0,
        commits: Vec::new(),
    };
    let mut batch = WriteBatch::default();
    let started = Instant::now();
    for tick in ticks {
        for (d, device) in devices.iter().enumerate() {
            let points = sample_points(&metrics[..width(d)], tick, rng);
            out.points += points.len();
            out.samples += 1;
            batch.samples.push(SampleRows {
                device: device.clone(),
                seq: tick,
                // Devices do not sample in lockstep.
                ts: T0 + tick * INTERVAL + (d as u64 * 7) % INTERVAL,
                points,
                unsynced: None,
            });
            if batch.samples.len() == BATCH {
                out.commits.push(commit(writer, &mut batch)?);
            }
        }
    }
    if !batch.samples.is_empty() {
        out.commits.push(commit(writer, &mut batch)?);
    }
    out.secs = started.elapsed().as_secs_f64();
    Ok(out)
}

/// The points of one sample, with values of the kind the agent sends for
/// each metric (the storage encodes a value by its kind): percentages,
/// loads and temperatures are `f32`s, byte counts and counters integers,
/// flags 0 or 1.
fn sample_points(metrics: &[Metric], tick: u64, rng: &mut StdRng) -> Vec<Point> {
    metrics
        .iter()
        .map(|m| {
            let value = match m.as_str() {
                "cpu" | "mem.pct" | "swap.pct" | "disk.pct:/" => {
                    f64::from(rng.random_range(0.0f32..100.0))
                }
                "load.1" | "load.5" | "load.15" => f64::from(rng.random_range(0.0f32..4.0)),
                "temp" | "temp:cpu-thermal" => f64::from(rng.random_range(40.0f32..85.0)),
                "mem.used" | "mem.avail" => rng.random_range(100_000_000u64..4_000_000_000) as f64,
                "disk.free:/" => rng.random_range(1u64 << 30..1u64 << 36) as f64,
                "net.rx_bytes:eth0" | "net.tx_bytes:eth0" => {
                    ((1u64 << 32) + tick * 50_000 + rng.random_range(0..50_000)) as f64
                }
                "uptime" => (tick * 10) as f64,
                "net.errors:eth0" | "agent.queue_records" => f64::from(rng.random_range(0u32..3)),
                _ => f64::from(u8::from(rng.random_bool(0.01))),
            };
            Point {
                metric: m.clone(),
                value,
            }
        })
        .collect()
}

fn commit(writer: &mut Writer, batch: &mut WriteBatch) -> anyhow::Result<f64> {
    let started = Instant::now();
    writer.commit(batch)?;
    let t = ms(started.elapsed());
    batch.samples.clear();
    // As the store thread does: new samples move into the history table
    // once due (in the ingest's time, not in the commit's).
    if writer.merge_due() {
        writer.merge()?;
    }
    Ok(t)
}

/// Commit cost by durability, on a fresh database: 200 commits of 100
/// samples of 20 points (a 1,000-device fleet's 10 s at one commit a
/// second).
fn durability(
    dir: &Path,
    devices: &[DeviceId],
    metrics: &[Metric],
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    for (name, d) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let path = dir.join(format!("sync-{name}.db"));
        let (mut writer, _) = history::open_with(&path, d)?;
        let mut times = Vec::new();
        for round in 0..200u64 {
            let mut batch = WriteBatch::default();
            for device in devices.iter().cycle().skip(round as usize * 100).take(100) {
                batch.samples.push(SampleRows {
                    device: device.clone(),
                    seq: round,
                    ts: T0 + round * 1_000,
                    points: sample_points(metrics, round, rng),
                    unsynced: None,
                });
            }
            let started = Instant::now();
            writer.commit(&batch)?;
            times.push(ms(started.elapsed()));
        }
        println!("commit_{name}_ms_p50={:.2}", pct(&times, 50));
        println!("commit_{name}_ms_p99={:.2}", pct(&times, 99));
    }
    Ok(())
}

/// Fold the WAL into the database file so its size is the real one.
fn checkpoint(path: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Drop the database's pages from the OS page cache (they are clean after
/// the checkpoint, so the kernel can discard them).
fn evict(path: &Path) -> anyhow::Result<()> {
    for p in [path.to_path_buf(), path.with_extension("db-wal")] {
        let Ok(file) = std::fs::File::open(&p) else {
            continue;
        };
        // SAFETY: a valid open descriptor; the call only gives advice.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        anyhow::ensure!(rc == 0, "posix_fadvise on {}: error {rc}", p.display());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// The `p`th percentile (nearest rank) of `v`.
fn pct(v: &[f64], p: usize) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let rank = (p * s.len()).div_ceil(100).clamp(1, s.len());
    s[rank - 1]
}
