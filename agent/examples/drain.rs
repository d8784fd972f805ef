//! Time to drain a backlog: fills a queue directory with copies of one real
//! sample, then runs the agent in-process against a broker and measures from
//! start-up until the broker acknowledged the whole backlog, while a
//! subscriber checks that every sample arrived. Used by `bench/drain.sh`.
//!
//! The agent runs on a current-thread runtime of its own, like the binary;
//! the subscriber gets another thread, as a separate process would.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use picket_agent::queue::{NewRecord, Queue, QueueConfig, RecordKind};
use picket_agent::sensors::clock::{Clock, SystemClock};
use picket_agent::sensors::{SensorConfig, Sensors};
use picket_agent::views::Link;
use picket_protocol::{AgentHealth, Format, Sample, Telemetry, encode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::oneshot;

const DEVICE: &str = "bench-drain";

#[derive(Parser)]
struct Args {
    /// Port of the MQTT broker on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// An empty directory for the queue.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    samples: u64,
    /// queue.max_bytes: the backlog must fit under the cap, or the queue
    /// would drop its oldest records while it is being filled.
    #[arg(long, default_value = "256MiB")]
    max_bytes: String,
    /// Give up (and say so) if the backlog is not drained by then.
    #[arg(long, default_value_t = 300)]
    give_up_secs: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = agent_config(&args)?;
    println!("batch_records={}", config.uplink.batch_records);
    println!("batch_bytes={}", config.uplink.batch_bytes);
    println!("inflight={}", config.uplink.inflight);

    let fill_started = Instant::now();
    let (first, last, sample_bytes, disk_bytes) = fill(args.samples, &config.queue)?;
    println!("fill_secs={:.3}", fill_started.elapsed().as_secs_f64());
    println!("sample_cbor_bytes={sample_bytes}");
    println!("queue_disk_bytes={disk_bytes}");

    let (ready_tx, ready_rx) = std_mpsc::channel();
    let give_up = Duration::from_secs(args.give_up_secs);
    let port = args.port;
    let subscriber = std::thread::spawn(move || subscribe(port, first, last, ready_tx, give_up));
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the subscriber did not get its subscription acknowledged")?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel();
    let started = Instant::now();
    let agent = std::thread::spawn(move || {
        rt.block_on(picket_agent::run_observed(
            config,
            async {
                let _ = stop_rx.await;
            },
            move |obs| {
                let mut store = obs.store;
                let mut uplink = obs.uplink;
                tokio::spawn(async move {
                    let connected = uplink
                        .wait_for(|u| matches!(u.link, Link::Connected { .. }))
                        .await
                        .ok()
                        .map(|_| started.elapsed());
                    let drained = store
                        .wait_for(|s| s.stats.acked_through.is_some_and(|a| a >= last))
                        .await
                        .ok()
                        .map(|_| started.elapsed());
                    let _ = done_tx.send((connected, drained));
                });
            },
        ))
    });

    let (connected, drained) = match rt_wait(done_rx, give_up) {
        Some((c, Some(d))) => (c, d),
        _ => {
            let _ = stop_tx.send(());
            let _ = agent.join();
            bail!("the backlog was not acknowledged within {give_up:?}");
        }
    };
    let received = subscriber
        .join()
        .map_err(|_| anyhow::anyhow!("the subscriber panicked"))??;
    let _ = stop_tx.send(());
    agent
        .join()
        .map_err(|_| anyhow::anyhow!("the agent thread panicked"))??;

    if let Some(c) = connected {
        println!("connected_secs={:.3}", c.as_secs_f64());
    }
    println!("drain_secs={:.3}", drained.as_secs_f64());
    println!(
        "samples_per_sec={:.0}",
        args.samples as f64 / drained.as_secs_f64()
    );
    println!("received_distinct={}", received.distinct);
    println!("received_duplicates={}", received.duplicates);
    println!("received_messages={}", received.messages);
    println!(
        "received_secs={:.3}",
        received.all_at.duration_since(started).as_secs_f64()
    );
    Ok(())
}

/// The agent's configuration: defaults plus what the benchmark must set, read
/// the same way the binary reads its environment.
fn agent_config(args: &Args) -> anyhow::Result<picket_agent::Config> {
    let vars = [
        ("PICKET_DEVICE_ID", DEVICE.to_string()),
        (
            "PICKET_BROKER_URL",
            format!("mqtt://127.0.0.1:{}", args.port),
        ),
        ("PICKET_QUEUE_DIR", args.dir.display().to_string()),
        (
            "PICKET_COMMANDS_STATE_DIR",
            format!("{}.commands", args.dir.display()),
        ),
        ("PICKET_QUEUE_MAX_BYTES", args.max_bytes.clone()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let (raw, _) = picket_agent::config::parse("", Path::new("(drain benchmark)"), vars)?;
    Ok(picket_agent::config::validate(raw)?)
}

/// Appends to the configured queue `n` copies of one real sample with
/// consecutive seqs and one-second timestamps ending now, stored as the store
/// task stores them. Returns the seq range, the size of one stored sample and
/// the queue's size on disk.
fn fill(n: u64, cfg: &QueueConfig) -> anyhow::Result<(u64, u64, usize, u64)> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let mut clock = SystemClock::new(Path::new("/"));
    let mut sensors = Sensors::new(SensorConfig::default());
    // The first reading has no CPU percentage: it needs a previous one.
    sensors.sample(&clock.stamp());
    std::thread::sleep(Duration::from_millis(500));
    let now = clock.stamp();
    let (mut sample, _) = sensors.sample(&now);
    sample.agent = Some(AgentHealth {
        version: env!("CARGO_PKG_VERSION").into(),
        config: "0123456789abcdef".into(),
        queue_records: n,
        queue_bytes: 0,
        oldest_unsent_ms: Some(n * 1000),
        dropped: 0,
        quarantined: 0,
    });

    let (mut queue, _) = Queue::open(cfg.clone(), boot.trim())?;
    let first = queue.next_seq();
    let mut sample_bytes = 0;
    let mut chunk = Vec::with_capacity(1000);
    for i in 0..n {
        let back = (n - 1 - i) * 1000;
        let s = Sample {
            seq: first + i,
            ts: now.ts - back,
            mono: now.mono.saturating_sub(back),
            ..sample.clone()
        };
        let payload = encode(&s, Format::Cbor)?;
        sample_bytes = payload.len();
        chunk.push(NewRecord {
            seq: s.seq,
            kind: RecordKind::Sample,
            ts_ms: s.ts,
            payload,
        });
        if chunk.len() == 1000 || i + 1 == n {
            let dropped = queue.append(&chunk)?;
            if dropped > 0 {
                bail!("the queue cap dropped {dropped} records: raise --max-bytes");
            }
            chunk.clear();
        }
    }
    let disk = queue.stats().bytes;
    queue.close()?;
    Ok((first, first + n - 1, sample_bytes, disk))
}

struct Received {
    distinct: u64,
    duplicates: u64,
    messages: u64,
    /// When the last missing sample arrived.
    all_at: Instant,
}

/// Counts the backlog's samples as they arrive, until all of them did.
fn subscribe(
    port: u16,
    first: u64,
    last: u64,
    ready: std_mpsc::Sender<()>,
    give_up: Duration,
) -> anyhow::Result<Received> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut opts = MqttOptions::new("bench-drain-subscriber", "127.0.0.1", port);
        opts.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut events) = AsyncClient::new(opts, 16);
        client
            .subscribe(format!("picket/v1/{DEVICE}/telemetry"), QoS::AtLeastOnce)
            .await?;
        let total = last - first + 1;
        let mut seen = vec![false; total as usize];
        let mut got = Received {
            distinct: 0,
            duplicates: 0,
            messages: 0,
            all_at: Instant::now(),
        };
        let deadline = tokio::time::Instant::now() + give_up;
        while got.distinct < total {
            let event = tokio::time::timeout_at(deadline, events.poll())
                .await
                .context("not every sample arrived before giving up")??;
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = ready.send(());
                }
                Event::Incoming(Packet::Publish(p)) => {
                    got.messages += 1;
                    let batch: Telemetry = picket_protocol::decode(&p.payload, 16 << 20)?;
                    for s in batch.samples {
                        if (first..=last).contains(&s.seq) {
                            let slot = &mut seen[(s.seq - first) as usize];
                            if *slot {
                                got.duplicates += 1;
                            } else {
                                *slot = true;
                                got.distinct += 1;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        got.all_at = Instant::now();
        let _ = client.disconnect().await;
        Ok(got)
    })
}

/// Blocks on a oneshot from outside any runtime, with a deadline.
fn rt_wait<T>(rx: oneshot::Receiver<T>, within: Duration) -> Option<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok()?;
    rt.block_on(async { tokio::time::timeout(within, rx).await.ok()?.ok() })
}
