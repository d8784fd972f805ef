//! Command round trip, as `bench/command-rtt.sh` measures it: sign a
//! `ping` for a running agent, publish it, and time until its `succeeded`
//! reply arrives; one command at a time, `--count` times. Prints
//! `key=value` lines (milliseconds).
//!
//! The envelope is built and signed like the collector's own (same
//! `Issuer`); the collector's SQLite commit before publishing is not part
//! of the measure (it is the broker → agent → broker path that is).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use picket_collector::commands::{CommandsConfig, Issuer};
use picket_protocol::{
    Action, DEFAULT_MAX_PAYLOAD, DeviceId, Format, NoArgs, Reply, ReplyState, Topics, decode,
    signing,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

struct Args {
    port: u16,
    device: String,
    key: PathBuf,
    count: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        port: 1883,
        device: "bench".into(),
        key: PathBuf::from("command.key"),
        count: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().context("a flag without its value")?;
        match flag.as_str() {
            "--port" => a.port = v.parse()?,
            "--device" => a.device = v,
            "--key" => a.key = v.into(),
            "--count" => a.count = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let key = signing::parse_private_key(&std::fs::read_to_string(&a.key)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.key.display()))?;
    let device = DeviceId::new(a.device.clone())?;
    let issuer = Issuer {
        cfg: CommandsConfig {
            key: Some(key.into()),
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(60),
        },
        topics: Topics::default(),
        format: Format::Cbor,
    };
    let mut opts = MqttOptions::new("picket-command-rtt", "127.0.0.1", a.port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 64);
    // Like the collector's link.
    el.network_options.set_tcp_nodelay(true);
    client
        .subscribe(format!("picket/v1/{device}/reply/+"), QoS::AtLeastOnce)
        .await?;
    // Until the subscription is acknowledged, replies could be missed.
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = el.poll().await? {
            break;
        }
    }
    let mut rtts = Vec::with_capacity(a.count);
    for _ in 0..a.count {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        let issued = issuer.issue(&device, Action::Ping(NoArgs {}), None, now)?;
        let id = issued.command.id.clone();
        let start = Instant::now();
        client
            .publish(issued.topic, QoS::AtLeastOnce, false, issued.payload)
            .await?;
        let deadline = start + Duration::from_secs(10);
        loop {
            let ev = tokio::time::timeout_at(deadline.into(), el.poll())
                .await
                .with_context(|| format!("no succeeded reply for {id} within 10 s"))??;
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let r: Reply = decode(&p.payload, DEFAULT_MAX_PAYLOAD)?;
                if r.id == id && r.state == ReplyState::Succeeded {
                    rtts.push(start.elapsed());
                    break;
                }
                if r.id == id && matches!(r.state, ReplyState::Rejected | ReplyState::Failed) {
                    bail!("command {id}: {:?} {:?}", r.state, r.reason);
                }
            }
        }
    }
    rtts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| ms(rtts[((rtts.len() as f64 * p).ceil() as usize).clamp(1, rtts.len()) - 1]);
    println!("count={}", rtts.len());
    println!("min_ms={:.2}", ms(rtts[0]));
    println!("p50_ms={:.2}", pct(0.50));
    println!("p90_ms={:.2}", pct(0.90));
    println!("p99_ms={:.2}", pct(0.99));
    println!("max_ms={:.2}", ms(*rtts.last().context("no command")?));
    Ok(())
}
