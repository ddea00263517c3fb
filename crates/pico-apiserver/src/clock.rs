//! The wall clock of session lifetimes (created, expires, last activity). Tests use one that
//! follows tokio's clock, so that `tokio::time::pause` and `advance` move expiry and idleness
//! too, without sleeping.

use time::OffsetDateTime;

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's clock.
    System,
    /// `wall` at the tokio instant `at`, advancing with tokio's (maybe paused) clock.
    Tokio {
        wall: OffsetDateTime,
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// Starts at the system's time now and then follows tokio's clock.
    pub fn following_tokio() -> Self {
        Self::Tokio {
            wall: OffsetDateTime::now_utc(),
            at: tokio::time::Instant::now(),
        }
    }

    /// Now, with the wire's precision (whole microseconds).
    pub fn now(&self) -> OffsetDateTime {
        let now = match self {
            Self::System => OffsetDateTime::now_utc(),
            Self::Tokio { wall, at } => *wall + at.elapsed(),
        };
        pico_wire::timestamp::truncate(now)
    }
}
