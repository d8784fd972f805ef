//! A command's output, bounded and cut into ordered chunks small enough for
//! any broker's default packet limit: all at once when a command returns
//! ([`chunks`]), or as it comes ([`Sink`], for streaming commands such as
//! `docker.logs` with `follow`).

use picket_protocol::{DeviceId, Reply, ReplyState};
use tokio::sync::mpsc;

/// Bytes of output per reply. rumqttd's default payload limit is 20 KiB;
/// 8 KiB leaves room for the envelope and JSON escaping.
pub const CHUNK_BYTES: usize = 8 * 1024;

const TRUNCATED: &str = "\n[output truncated]\n";

/// Cut `output` to at most `max` bytes (marking the cut), then into chunks
/// of at most `chunk` bytes, never inside a UTF-8 character.
pub fn chunks(output: &str, max: usize, chunk: usize) -> Vec<String> {
    let bounded: String = if output.len() > max {
        let keep = floor_char(output, max.saturating_sub(TRUNCATED.len()));
        format!("{}{TRUNCATED}", &output[..keep])
    } else {
        output.to_string()
    };
    let mut out = Vec::new();
    let mut rest = bounded.as_str();
    while !rest.is_empty() {
        let mut cut = floor_char(rest, chunk);
        if cut == 0 {
            // A chunk smaller than one character: take the character.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    out
}

fn floor_char(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A command's output sent as it is written: every full chunk (and on
/// [`Sink::flush`], whatever is buffered) goes out at once as a `running`
/// reply with the next `chunk` index; what is left when the command ends
/// travels with its final status ([`Sink::finish`]). Bounded like
/// [`chunks`]: past the bound the output is cut and the cut marked.
#[derive(Debug)]
pub struct Sink {
    replies: mpsc::Sender<Reply>,
    device: DeviceId,
    id: String,
    chunk: usize,
    max: usize,
    written: usize,
    full: bool,
    buf: String,
    next: u32,
}

impl Sink {
    pub fn new(replies: mpsc::Sender<Reply>, device: DeviceId, id: String, max: usize) -> Sink {
        Sink {
            replies,
            device,
            id,
            chunk: CHUNK_BYTES,
            max,
            written: 0,
            full: false,
            buf: String::new(),
            next: 0,
        }
    }

    /// Lower the bound (a command's own `max_bytes`); never raises it.
    pub fn limit(&mut self, max: usize) {
        self.max = self.max.min(max.max(TRUNCATED.len()));
    }

    /// Append `text`, more may follow; `false` once the bound is reached
    /// (the rest of the output would be dropped: a stream can stop
    /// reading). Room for the cut's mark is always kept.
    pub async fn write(&mut self, text: &str) -> bool {
        let data_max = self.max.saturating_sub(TRUNCATED.len());
        self.append(text, data_max).await
    }

    /// Append the last of the output (a command's result when it returns):
    /// kept whole if it fits in the bound, as [`chunks`] does.
    pub async fn write_last(&mut self, text: &str) -> bool {
        self.append(text, self.max).await
    }

    async fn append(&mut self, text: &str, fits: usize) -> bool {
        if self.full {
            return false;
        }
        if self.written + text.len() <= fits {
            self.buf.push_str(text);
            self.written += text.len();
        } else {
            // The mark is cut too when earlier output left no room for it:
            // what was sent cannot be taken back, and the bound holds.
            let room = self.max.saturating_sub(self.written);
            let keep = floor_char(text, room.saturating_sub(TRUNCATED.len()));
            self.buf.push_str(&text[..keep]);
            self.buf
                .push_str(&TRUNCATED[..(room - keep).min(TRUNCATED.len())]);
            self.written = self.max;
            self.full = true;
        }
        // Strictly more than a chunk: the final status always has the last
        // piece, as with [`chunks`].
        while self.buf.len() > self.chunk {
            let mut cut = floor_char(&self.buf, self.chunk);
            if cut == 0 {
                cut = self
                    .buf
                    .chars()
                    .next()
                    .map_or(self.buf.len(), char::len_utf8);
            }
            let rest = self.buf.split_off(cut);
            let piece = std::mem::replace(&mut self.buf, rest);
            self.send(piece).await;
        }
        !self.full
    }

    /// Send what is buffered now, so a slow stream does not wait for a
    /// full chunk.
    pub async fn flush(&mut self) {
        if !self.buf.is_empty() {
            let piece = std::mem::take(&mut self.buf);
            self.send(piece).await;
        }
    }

    /// What is left for the final status, and its chunk index.
    pub fn finish(self) -> (Option<String>, Option<u32>) {
        if self.buf.is_empty() {
            (None, None)
        } else {
            (Some(self.buf), Some(self.next))
        }
    }

    async fn send(&mut self, output: String) {
        let reply = Reply {
            v: picket_protocol::VERSION,
            id: self.id.clone(),
            device: self.device.clone(),
            state: ReplyState::Running,
            reason: None,
            output: Some(output),
            chunk: Some(self.next),
            ts: crate::sensors::clock::unix_ms(),
        };
        self.next += 1;
        let _ = self.replies.send(reply).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: Vec<(&str, usize, usize, Vec<&str>)> = vec![
            ("", 100, 10, vec![]),
            ("pong", 100, 10, vec!["pong"]),
            ("abcdefghij", 100, 4, vec!["abcd", "efgh", "ij"]),
            ("ééé", 100, 3, vec!["é", "é", "é"]),
            ("ééé", 100, 1, vec!["é", "é", "é"]),
        ];
        for (input, max, chunk, want) in cases {
            assert_eq!(chunks(input, max, chunk), want, "{input:?} {max} {chunk}");
        }
    }

    #[test]
    fn bounded_with_a_mark() {
        let big = "x".repeat(1000);
        let got = chunks(&big, 100, 30);
        let joined = got.concat();
        assert_eq!(joined.len(), 100);
        assert!(joined.ends_with(TRUNCATED));
        assert!(got.iter().all(|c| c.len() <= 30));
    }

    fn sink(max: usize, chunk: usize) -> (Sink, mpsc::Receiver<Reply>) {
        let (tx, rx) = mpsc::channel(64);
        let mut s = Sink::new(tx, DeviceId::new("pi").unwrap(), "c1".into(), max);
        s.chunk = chunk;
        (s, rx)
    }

    fn sent(rx: &mut mpsc::Receiver<Reply>) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        while let Ok(r) = rx.try_recv() {
            assert_eq!(r.state, ReplyState::Running);
            out.push((r.output.unwrap(), r.chunk.unwrap()));
        }
        out
    }

    #[tokio::test]
    async fn sink_matches_chunks_for_output_written_at_once() {
        let cases: Vec<(String, usize, usize)> = vec![
            (String::new(), 100, 10),
            ("pong".into(), 100, 10),
            ("abcdefghij".into(), 100, 4),
            ("abcdefgh".into(), 100, 4),
            ("ééé".into(), 100, 3),
            ("x".repeat(1000), 100, 30),
        ];
        for (input, max, chunk) in cases {
            let (mut s, mut rx) = sink(max, chunk);
            s.write_last(&input).await;
            let mut got: Vec<String> = sent(&mut rx).into_iter().map(|(o, _)| o).collect();
            let (last, idx) = s.finish();
            assert_eq!(idx.map(|i| i as usize), last.as_ref().map(|_| got.len()));
            got.extend(last);
            assert_eq!(got, chunks(&input, max, chunk), "{input:?} {max} {chunk}");
        }
    }

    #[tokio::test]
    async fn sink_streams_in_order_and_stops_at_the_bound() {
        let (mut s, mut rx) = sink(60, 8);
        assert!(s.write("line 1\n").await);
        assert!(sent(&mut rx).is_empty(), "less than a chunk waits");
        s.flush().await;
        assert!(s.write("line 2\nline 3\n").await);
        s.flush().await;
        assert_eq!(
            sent(&mut rx),
            vec![
                ("line 1\n".to_string(), 0),
                ("line 2\nl".to_string(), 1),
                ("ine 3\n".to_string(), 2)
            ]
        );
        assert!(!s.write(&"y".repeat(100)).await, "past the bound");
        assert!(!s.write("more").await);
        assert!(!s.write_last("more").await);
        let mut all: Vec<String> = sent(&mut rx).into_iter().map(|(o, _)| o).collect();
        let (last, idx) = s.finish();
        assert_eq!(idx, Some(3 + all.len() as u32));
        all.extend(last);
        let joined = all.concat();
        assert_eq!(joined, format!("{}{TRUNCATED}", "y".repeat(19)));
        assert_eq!(21 + joined.len(), 60);
    }

    #[tokio::test]
    async fn a_lower_limit() {
        let (mut s, mut rx) = sink(1000, 100);
        s.limit(30);
        s.limit(5000);
        assert!(!s.write(&"z".repeat(50)).await);
        let (last, _) = s.finish();
        assert!(sent(&mut rx).is_empty());
        assert_eq!(last.unwrap().len(), 30);
    }
}
