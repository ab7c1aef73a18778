//! Keyspace notifications (Redis's `notify-keyspace-events`): which classes
//! of events are published, on `__keyspace@0__:<key>` and
//! `__keyevent@0__:<event>`.

pub const KEYSPACE: u32 = 1 << 0; // K
pub const KEYEVENT: u32 = 1 << 1; // E
pub const GENERIC: u32 = 1 << 2; // g: del, expire, persist, ...
pub const STRING: u32 = 1 << 3; // $: set, incrby, ...
pub const LIST: u32 = 1 << 4; // l
pub const SET: u32 = 1 << 5; // s
pub const HASH: u32 = 1 << 6; // h
pub const ZSET: u32 = 1 << 7; // z
pub const EXPIRED: u32 = 1 << 8; // x
pub const EVICTED: u32 = 1 << 9; // e
pub const STREAM: u32 = 1 << 10; // t
pub const KEY_MISS: u32 = 1 << 11; // m
pub const MODULE: u32 = 1 << 12; // d
pub const NEW_KEY: u32 = 1 << 13; // n

/// `A`: every class but key-miss and new-key, as in Redis.
const ALL: u32 = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

const LETTERS: [(char, u32); 14] = [
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('m', KEY_MISS),
    ('d', MODULE),
    ('n', NEW_KEY),
    ('K', KEYSPACE),
    ('E', KEYEVENT),
];

/// Parses a flag string such as `KEA` or `Ex`; None for an unknown letter.
pub fn parse(flags: &[u8]) -> Option<u32> {
    let mut bits = 0;
    for &c in flags {
        bits |= match c as char {
            'A' => ALL,
            c => LETTERS.iter().find(|(l, _)| *l == c)?.1,
        };
    }
    Some(bits)
}

/// The canonical flag string, as CONFIG GET reports it.
pub fn format(bits: u32) -> String {
    let mut out = String::new();
    let classes = LETTERS.iter().filter(|(_, b)| *b != KEYSPACE && *b != KEYEVENT);
    if bits & ALL == ALL {
        out.push('A');
        out.extend(classes.filter(|(_, b)| ALL & b == 0 && bits & b != 0).map(|(l, _)| *l));
    } else {
        out.extend(classes.filter(|(_, b)| bits & b != 0).map(|(l, _)| *l));
    }
    if bits & KEYSPACE != 0 {
        out.push('K');
    }
    if bits & KEYEVENT != 0 {
        out.push('E');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_format_like_redis() {
        assert_eq!(parse(b""), Some(0));
        assert_eq!(parse(b"KEA").map(format), Some("AKE".into()));
        assert_eq!(parse(b"Ex$").map(format), Some("$xE".into()));
        assert_eq!(parse(b"Kgxe").map(format), Some("gxeK".into()));
        assert_eq!(parse(b"KEAm").map(format), Some("AmKE".into()));
        assert_eq!(parse(b"Q"), None);
    }
}
