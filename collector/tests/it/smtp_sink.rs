//! An SMTP server for e-mail tests, on 127.0.0.1 port 0, speaking enough
//! of RFC 5321 for a real client: greeting, EHLO (AUTH PLAIN LOGIN,
//! 8BITMIME), AUTH, MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET,
//! NOOP, QUIT. It records what it was given.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A message as received.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The credentials the session authenticated with.
    pub auth: Option<(String, String)>,
    pub from: String,
    pub rcpt: Vec<String>,
    /// The DATA, unstuffed, CRLF line ends.
    pub data: String,
}

impl Mail {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_string());
            }
        }
        value
    }

    /// The body decoded from its transfer encoding, LF line ends, without
    /// the blank lines the transport adds at the end.
    pub fn body(&self) -> String {
        let raw = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let decoded = match self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "quoted-printable" => quoted_printable(raw),
            "base64" => B64
                .decode(raw.split_whitespace().collect::<String>())
                .expect("base64 body"),
            _ => raw.as_bytes().to_vec(),
        };
        let text = String::from_utf8(decoded)
            .expect("UTF-8 body")
            .replace("\r\n", "\n");
        format!("{}\n", text.trim_end_matches('\n'))
    }
}

fn quoted_printable(s: &str) -> Vec<u8> {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("QP escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[derive(Default)]
struct Shared {
    mails: Mutex<Vec<Mail>>,
    /// Every AUTH attempt, with its credentials and whether they matched.
    auths: Mutex<Vec<(String, String, bool)>>,
}

pub struct SmtpSink {
    pub port: u16,
    shared: Arc<Shared>,
    count: watch::Sender<usize>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Accept `credentials` (AUTH required when given), advertising the
    /// AUTH `mechanisms` (e.g. `PLAIN LOGIN`).
    pub async fn start(credentials: Option<(&str, &str)>, mechanisms: &str) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared::default());
        let count = watch::Sender::new(0);
        let config = Arc::new(Config {
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            mechanisms: mechanisms.to_string(),
        });
        let (s, c) = (shared.clone(), count.clone());
        let task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let (s, c, config) = (s.clone(), c.clone(), config.clone());
                sessions.spawn(async move {
                    // A client hanging up mid-session is not the sink's problem.
                    let _ = session(socket, &config, &s, &c).await;
                });
            }
        });
        SmtpSink {
            port,
            shared,
            count,
            task,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.shared.mails.lock().expect("lock").clone()
    }

    pub fn auths(&self) -> Vec<(String, String, bool)> {
        self.shared.auths.lock().expect("lock").clone()
    }

    /// Wait until `n` mails arrived; panics after `deadline`.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Mail> {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(deadline, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} mails not received within {deadline:?}"))
            .expect("sink alive");
        self.mails()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Config {
    credentials: Option<(String, String)>,
    mechanisms: String,
}

async fn session(
    socket: TcpStream,
    config: &Config,
    shared: &Shared,
    count: &watch::Sender<usize>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    macro_rules! reply {
        ($($t:tt)*) => {
            write.write_all(format!($($t)*).as_bytes()).await?
        };
    }
    macro_rules! read_line {
        () => {{
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }};
    }

    reply!("220 sink.test ESMTP\r\n");
    let mut auth: Option<(String, String)> = None;
    let mut from: Option<String> = None;
    let mut rcpt = Vec::new();
    loop {
        let command = read_line!();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            reply!(
                "250-sink.test\r\n250-8BITMIME\r\n250 AUTH {}\r\n",
                config.mechanisms
            );
        } else if upper.starts_with("HELO") {
            reply!("250 sink.test\r\n");
        } else if let Some(rest) = upper.strip_prefix("AUTH ") {
            let given = if rest.starts_with("PLAIN") {
                let initial = command.get(11..).map(str::trim).unwrap_or("");
                let encoded = if initial.is_empty() {
                    reply!("334 \r\n");
                    read_line!()
                } else {
                    initial.to_string()
                };
                let decoded =
                    String::from_utf8(B64.decode(encoded).unwrap_or_default()).unwrap_or_default();
                let mut parts = decoded.split('\0').skip(1);
                match (parts.next(), parts.next()) {
                    (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                    _ => None,
                }
            } else if rest.starts_with("LOGIN") {
                reply!("334 {}\r\n", B64.encode("Username:"));
                let user = B64.decode(read_line!()).unwrap_or_default();
                reply!("334 {}\r\n", B64.encode("Password:"));
                let pass = B64.decode(read_line!()).unwrap_or_default();
                Some((
                    String::from_utf8_lossy(&user).to_string(),
                    String::from_utf8_lossy(&pass).to_string(),
                ))
            } else {
                reply!("504 5.5.4 mechanism not supported\r\n");
                continue;
            };
            let Some((user, pass)) = given else {
                reply!("501 5.5.2 cannot decode\r\n");
                continue;
            };
            let ok = config.credentials.as_ref() == Some(&(user.clone(), pass.clone()));
            shared
                .auths
                .lock()
                .expect("lock")
                .push((user.clone(), pass.clone(), ok));
            if ok {
                auth = Some((user, pass));
                reply!("235 2.7.0 authenticated\r\n");
            } else {
                reply!("535 5.7.8 authentication credentials invalid\r\n");
            }
        } else if upper.starts_with("MAIL FROM:") {
            if config.credentials.is_some() && auth.is_none() {
                reply!("530 5.7.0 authentication required\r\n");
                continue;
            }
            from = Some(address(&command["MAIL FROM:".len()..]));
            rcpt.clear();
            reply!("250 2.1.0 ok\r\n");
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                reply!("503 5.5.1 MAIL first\r\n");
                continue;
            }
            rcpt.push(address(&command["RCPT TO:".len()..]));
            reply!("250 2.1.5 ok\r\n");
        } else if upper == "DATA" {
            if rcpt.is_empty() {
                reply!("503 5.5.1 RCPT first\r\n");
                continue;
            }
            reply!("354 end with <CRLF>.<CRLF>\r\n");
            let mut data = String::new();
            loop {
                let l = read_line!();
                if l == "." {
                    break;
                }
                // RFC 5321 4.5.2: a leading dot was doubled by the client.
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push_str("\r\n");
            }
            shared.mails.lock().expect("lock").push(Mail {
                auth: auth.clone(),
                from: from.take().unwrap_or_default(),
                rcpt: std::mem::take(&mut rcpt),
                data,
            });
            count.send_modify(|c| *c += 1);
            reply!("250 2.0.0 queued\r\n");
        } else if upper == "RSET" {
            from = None;
            rcpt.clear();
            reply!("250 2.0.0 ok\r\n");
        } else if upper == "NOOP" {
            reply!("250 2.0.0 ok\r\n");
        } else if upper == "QUIT" {
            reply!("221 2.0.0 bye\r\n");
            return Ok(());
        } else {
            reply!("502 5.5.2 command not recognised\r\n");
        }
    }
}

/// `<a@b.c> SIZE=123` → `a@b.c`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(s), Some(e)) if s < e => arg[s + 1..e].to_string(),
        _ => arg.split_whitespace().next().unwrap_or("").to_string(),
    }
}
