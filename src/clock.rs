//! Wall-clock time as Unix nanoseconds, the unit every stored and compared time in alertd uses.

/// Now, in Unix nanoseconds (0 if the clock is before 1970).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
