//! The `Range` header of a download: one `bytes=` range; anything else serves the whole file.

#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    Whole,
    /// Inclusive bounds inside the file.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

pub fn parse_range(header: &str, size: u64) -> ByteRange {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return ByteRange::Whole;
    };
    // Several ranges would need a multipart answer: the whole file is a valid reply too.
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        (true, true) => return ByteRange::Whole,
        // Suffix: the last N bytes.
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return ByteRange::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            Err(_) => return ByteRange::Whole,
        },
        (false, _) => {
            let Ok(start) = first.parse::<u64>() else {
                return ByteRange::Whole;
            };
            let end = if last.is_empty() {
                size.saturating_sub(1)
            } else {
                match last.parse::<u64>() {
                    Ok(end) if end >= start => end.min(size.saturating_sub(1)),
                    _ => return ByteRange::Whole,
                }
            };
            (start, end)
        }
    };
    let (start, end) = parsed;
    if size == 0 || start >= size {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            ByteRange::Part { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            ByteRange::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            ByteRange::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=95-200", 100),
            ByteRange::Part { start: 95, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), ByteRange::Whole);
        assert_eq!(parse_range("items=0-1", 100), ByteRange::Whole);
        assert_eq!(parse_range("bytes=5-1", 100), ByteRange::Whole);
        assert_eq!(parse_range("bytes=0-0", 0), ByteRange::Unsatisfiable);
    }
}
