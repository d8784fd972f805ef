//! A command's output, bounded and cut into ordered chunks small enough for
//! any broker's default packet limit.

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
}
