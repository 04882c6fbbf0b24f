//! CRI-format container logs, as a runtime writes them and kubelet reads them.

/// One line of a CRI-format container log: `<RFC3339Nano> <stream> <P|F> <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    /// true for `F` (a full line), false for `P` (part of a longer line).
    pub full: bool,
    pub text: String,
}

/// Parses a CRI-format log; `None` for a line that does not follow the format.
pub fn parse_log(content: &str) -> Vec<Option<LogLine>> {
    content
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (time, stream, tag) = (f.next()?, f.next()?, f.next()?);
            let text = f.next().unwrap_or_default();
            let full = match tag {
                "F" => true,
                "P" => false,
                _ => return None,
            };
            (matches!(stream, "stdout" | "stderr") && is_rfc3339_nano(time)).then(|| LogLine {
                time: time.into(),
                stream: stream.into(),
                full,
                text: text.into(),
            })
        })
        .collect()
}

/// `2026-01-02T03:04:05.123456789Z` or with a `+hh:mm` offset; the fraction is optional
/// (RFC3339Nano drops trailing zeros).
fn is_rfc3339_nano(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_parse() {
        let log = "2026-01-02T03:04:05.123456789Z stdout F hello world\n\
                   2026-01-02T03:04:05Z stderr P part\n\
                   2026-01-02T03:04:05.1+01:00 stdout F \n\
                   garbage\n\
                   2026-01-02T03:04:05Z stdin F x\n";
        let p = parse_log(log);
        assert_eq!(
            p[0],
            Some(LogLine {
                time: "2026-01-02T03:04:05.123456789Z".into(),
                stream: "stdout".into(),
                full: true,
                text: "hello world".into()
            })
        );
        assert!(
            p[1].as_ref()
                .is_some_and(|l| !l.full && l.stream == "stderr")
        );
        assert!(p[2].as_ref().is_some_and(|l| l.text.is_empty()));
        assert_eq!(p[3], None);
        assert_eq!(p[4], None);
    }
}
