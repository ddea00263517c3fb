//! Linux signal names and numbers, one table for the agent (which delivers and reports
//! signals over SSH by name) and the server (which turns a signal name into the `128 + n`
//! exit code of `/commands`). Names are SSH's: without the `SIG` prefix.

/// The signals SSH names (RFC 4254 §6.10) plus the other standard ones, with their numbers
/// on Linux (the same on x86_64 and aarch64).
pub const SIGNALS: &[(i32, &str)] = &[
    (1, "HUP"),
    (2, "INT"),
    (3, "QUIT"),
    (4, "ILL"),
    (5, "TRAP"),
    (6, "ABRT"),
    (7, "BUS"),
    (8, "FPE"),
    (9, "KILL"),
    (10, "USR1"),
    (11, "SEGV"),
    (12, "USR2"),
    (13, "PIPE"),
    (14, "ALRM"),
    (15, "TERM"),
    (24, "XCPU"),
    (25, "XFSZ"),
    (31, "SYS"),
];

/// The number of a signal named `TERM` or `SIGTERM` (any case), if it is one of [`SIGNALS`].
pub fn number(name: &str) -> Option<i32> {
    let name = name.trim();
    let bare = name
        .get(..3)
        .filter(|prefix| prefix.eq_ignore_ascii_case("SIG"))
        .map_or(name, |_| &name[3..]);
    SIGNALS
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(bare))
        .map(|(number, _)| *number)
}

/// The SSH name of signal `number`, if it is one of [`SIGNALS`].
pub fn name(number: i32) -> Option<&'static str> {
    SIGNALS
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        assert_eq!(number("KILL"), Some(9));
        assert_eq!(number("SIGTERM"), Some(15));
        assert_eq!(number("usr2"), Some(12));
        assert_eq!(number("NOPE"), None);
        assert_eq!(number("SIG"), None);
        for (n, text) in SIGNALS {
            assert_eq!((number(text), name(*n)), (Some(*n), Some(*text)));
        }
        assert_eq!(name(64), None);
    }
}
