//! The one line an error becomes on stderr.

/// The error and its causes joined by ": " (anyhow's `{:#}`), except a
/// cause whose text the message already ends with: library errors such as
/// `TraceError::Write` show their I/O source in their own text *and* return
/// it as `source()`, which would otherwise print "No space left on device"
/// twice.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("/t.cwt: byte 8: write failed: {source}")]
    struct Write {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = anyhow::Error::new(Write { source: io }).context("recording");
        assert_eq!(
            one_line(&e),
            "recording: /t.cwt: byte 8: write failed: No space left on device (os error 28)"
        );
    }

    #[test]
    fn distinct_causes_are_all_shown() {
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(one_line(&e), "outer: middle: inner");
    }
}
