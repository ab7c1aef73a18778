//! Snapshots: the keyspace written to a file and read back at start, so a
//! planned restart of the broker loses nothing.
//!
//! The file is a header line followed by one RESP array per key
//! (`[key, value, expires-at-ms or -1]`), written with the same encoder the
//! broker speaks. It is written to a temporary file, synced, then renamed
//! over the old one, so a crash mid-write never leaves a torn snapshot.
//! Locks and subscriptions belong to live connections and are not saved.
//!
//! The file holds what the store holds (sessions, tokens): it is readable
//! by its owner only, like the socket.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::{random_hex, Db, Expiry, Keyspace};
use crate::resp::{parse_frame, Frame, Limits};

const HEADER: &[u8] = b"CLUSTER-SHM-SNAPSHOT 1\n";

/// Writes every live key to `path` atomically; returns how many.
pub fn save(db: &Db, path: &Path, now: u64) -> io::Result<usize> {
    // Encode under the lock and write outside it, so workers are not held
    // up by the disk.
    let encoded = encode(&mut db.lock(), now);
    write(&encoded, path)
}

/// The snapshot file's bytes for every live key.
pub fn encode(ks: &mut Keyspace, now: u64) -> Encoded {
    let mut out = BytesMut::with_capacity(HEADER.len() + ks.len() * 64);
    out.extend_from_slice(HEADER);
    let mut keys = 0;
    for entry in ks.live_entries(now) {
        let expires = entry.expires_at().map_or(-1, |at| at as i64);
        Frame::Array(vec![
            Frame::Bulk(Bytes::copy_from_slice(entry.key())),
            Frame::Bulk(Bytes::copy_from_slice(entry.value())),
            Frame::Integer(expires),
        ])
        .encode(&mut out);
        keys += 1;
    }
    Encoded { bytes: out, keys }
}

/// An encoded snapshot and how many keys it holds.
pub struct Encoded {
    bytes: BytesMut,
    keys: usize,
}

/// Writes an encoded snapshot to `path` atomically; returns how many keys.
pub fn write(encoded: &Encoded, path: &Path) -> io::Result<usize> {
    let out = &encoded.bytes;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", path.display()))
    })?;
    // A name nobody can guess, created only if nothing is there yet: O_EXCL
    // refuses an existing entry, a planted symlink included, so the bytes go
    // to a new file of ours and never through a link to somebody else's.
    let temporary = path.with_file_name(format!("{}.tmp-{}", name.to_string_lossy(), random_hex(8)));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(out)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map(|_| encoded.keys)
}

/// Reads a snapshot into the store; keys that already exist are kept and
/// keys whose time has passed are skipped. Returns how many were loaded.
/// A missing file loads nothing.
pub fn load(db: &Db, path: &Path, now: u64) -> io::Result<usize> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let corrupt = |why: &str| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a valid snapshot: {why}", path.display()))
    };
    let body = data.strip_prefix(HEADER).ok_or_else(|| corrupt("unknown header"))?;
    // Parse everything first: a damaged file changes nothing.
    let limits = Limits { max_bulk_len: usize::MAX, ..Limits::default() };
    let mut records = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let Ok(Some((frame, used))) = parse_frame(&body[at..], &limits) else {
            return Err(corrupt("truncated or malformed record"));
        };
        at += used;
        match frame {
            Frame::Array(fields) => match fields.as_slice() {
                [Frame::Bulk(key), Frame::Bulk(value), Frame::Integer(expires)] => {
                    records.push((key.clone(), value.clone(), *expires))
                }
                _ => return Err(corrupt("unexpected record shape")),
            },
            _ => return Err(corrupt("unexpected record shape")),
        }
    }
    let mut ks = db.lock();
    let mut loaded = 0;
    for (key, value, expires) in records {
        let expiry = match expires {
            -1 => Expiry::Clear,
            // Any other negative deadline (a hand-edited file) lies in the past.
            at if at < 0 || at as u64 <= now => continue,
            at => Expiry::At(at as u64),
        };
        if !ks.contains(&key, now) {
            ks.set(&key, &value, expiry, now);
            loaded += 1;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_values_and_expiry() {
        let dir = std::env::temp_dir().join(format!("shm-snapshot-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.snapshot");
        let db = Db::new();
        {
            let mut ks = db.lock();
            ks.set(b"plain", b"{\"a\":1}", Expiry::Clear, 0);
            ks.set(b"binary", b"\xff\x00\r\n", Expiry::Clear, 0);
            ks.set(b"later", b"x", Expiry::At(5_000), 0);
            ks.set(b"sooner", b"y", Expiry::At(1_500), 0);
        }
        assert_eq!(save(&db, &path, 1_000).unwrap(), 4);

        let restored = Db::new();
        restored.lock().set(b"plain", b"kept", Expiry::Clear, 0);
        // At 2 s, "sooner" has expired and is not brought back.
        assert_eq!(load(&restored, &path, 2_000).unwrap(), 2);
        let mut ks = restored.lock();
        assert_eq!(ks.get(b"plain", 2_000).unwrap().value(), b"kept");
        assert_eq!(ks.get(b"binary", 2_000).unwrap().value(), b"\xff\x00\r\n");
        assert_eq!(ks.get(b"later", 2_000).unwrap().expires_at(), Some(5_000));
        assert!(ks.get(b"sooner", 2_000).is_none());
        drop(ks);

        assert_eq!(load(&Db::new(), &dir.join("missing"), 0).unwrap(), 0);
        fs::write(&path, b"CLUSTER-SHM-SNAPSHOT 1\n*3\r\n$1\r\nk").unwrap();
        let untouched = Db::new();
        assert_eq!(load(&untouched, &path, 0).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(untouched.lock().is_empty());
        fs::write(&path, b"something else").unwrap();
        assert!(load(&Db::new(), &path, 0).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A snapshot file holding `records` of `[key, value, expires-at]`.
    fn snapshot_of(records: &[(&[u8], &[u8], i64)]) -> Vec<u8> {
        let mut out = BytesMut::from(HEADER);
        for (key, value, expires) in records {
            Frame::Array(vec![
                Frame::Bulk(Bytes::copy_from_slice(key)),
                Frame::Bulk(Bytes::copy_from_slice(value)),
                Frame::Integer(*expires),
            ])
            .encode(&mut out);
        }
        out.to_vec()
    }

    #[test]
    fn a_negative_deadline_other_than_none_counts_as_expired() {
        let dir = std::env::temp_dir().join(format!("shm-snapshot-negative-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.snapshot");
        fs::write(&path, snapshot_of(&[(b"forever", b"1", -1), (b"edited", b"2", -5), (b"far-past", b"3", i64::MIN)]))
            .unwrap();
        let db = Db::new();
        assert_eq!(load(&db, &path, 1_000).unwrap(), 1);
        let mut ks = db.lock();
        assert_eq!(ks.get(b"forever", 1_000).unwrap().expires_at(), None);
        assert!(ks.get(b"edited", 1_000).is_none());
        assert!(ks.get(b"far-past", 1_000).is_none());
        drop(ks);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_is_private_and_replaces_a_symlink_at_its_path_without_following_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("shm-snapshot-private-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.snapshot");
        let victim = dir.join("victim");
        fs::write(&victim, b"not yours").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let db = Db::new();
        db.lock().set(b"k", b"v", Expiry::Clear, 0);
        assert_eq!(save(&db, &path, 0).unwrap(), 1);

        let metadata = fs::symlink_metadata(&path).unwrap();
        assert!(metadata.file_type().is_file());
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&victim).unwrap(), b"not yours");
        // Nothing is left behind but the snapshot and the untouched file.
        let mut names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["store.snapshot", "victim"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
