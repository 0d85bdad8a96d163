//! The NSCA 2.x intake: a TCP server that speaks the protocol of `send_nsca` (NSCA 2.7 to
//! 2.10), turning each data packet into a [`CheckResult`] with `via = "nsca"`.
//!
//! This module owns the wire format (init packet, v3 data packets of 4304 bytes and legacy
//! ones of 720 bytes), the CRC-32 check, the two supported encryption methods (0: none, 1: XOR
//! with the per-connection IV and the shared password), the per-connection idle timeout, the
//! cap on concurrent connections and the counters describing what happened. Stronger
//! `send_nsca` methods (mcrypt ciphers, 2 and up) are not supported: the config rejects them.
//!
//! Wire format, all integers big-endian, laid out as the C struct is on x86_64 (`int16_t`,
//! two bytes of padding, `u_int32_t`, `u_int32_t`, `int16_t`, three char arrays, two bytes of
//! tail padding to the 4-byte alignment):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 2 | packet version, 3 |
//! | 2 | 2 | padding (random, covered by the CRC) |
//! | 4 | 4 | CRC-32 of the whole packet with this field zeroed |
//! | 8 | 4 | timestamp, echoed from the server's init packet |
//! | 12 | 2 | return code |
//! | 14 | 64 | host name, NUL-terminated |
//! | 78 | 128 | service description, NUL-terminated; empty for a host check |
//! | 206 | 4096 (legacy: 512) | plugin output, NUL-terminated |
//! | 4302 (legacy: 718) | 2 | padding |
//!
//! A legacy packet is recognised by its CRC: after the first 720 bytes the server checks
//! whether they form a valid legacy packet, and only otherwise reads the rest of a v3 one.
//! So both kinds may follow each other on one connection.

use crate::checks::CheckResult;
use rand::RngCore;
use serde::{Deserialize, Deserializer};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

/// The port NSCA listens on when `listen` names only an address.
pub const DEFAULT_PORT: u16 = 5667;
/// Size of the IV the server sends in its init packet.
pub const IV_SIZE: usize = 128;
/// Size of the init packet: IV plus a 4-byte timestamp.
pub const INIT_PACKET_SIZE: usize = IV_SIZE + 4;
/// Size of a v3 data packet (4096 bytes of plugin output).
pub const PACKET_SIZE: usize = 4304;
/// Size of a legacy data packet (512 bytes of plugin output, `send_nsca --legacy-2-7-mode`).
pub const LEGACY_PACKET_SIZE: usize = 720;
/// The only packet version NSCA 2.7 and later send.
pub const PACKET_VERSION: i16 = 3;
/// Longest password `send_nsca` uses (its buffer size).
pub const MAX_PASSWORD_LEN: usize = 512;

const CRC_AT: usize = 4;
const TIMESTAMP_AT: usize = 8;
const RETURN_CODE_AT: usize = 12;
const HOST_AT: usize = 14;
const HOST_LEN: usize = 64;
const SERVICE_AT: usize = HOST_AT + HOST_LEN;
const SERVICE_LEN: usize = 128;
const OUTPUT_AT: usize = SERVICE_AT + SERVICE_LEN;
const OUTPUT_LEN: usize = 4096;
const LEGACY_OUTPUT_LEN: usize = 512;

/// Encryption method 0: packets travel in the clear.
pub const ENCRYPT_NONE: u8 = 0;
/// Encryption method 1: packets are XORed with the IV and then with the password.
pub const ENCRYPT_XOR: u8 = 1;

/// The NSCA intake's settings (`[checks.nsca]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NscaConfig {
    /// Where to accept `send_nsca` connections, e.g. `0.0.0.0:5667`, or only an address
    /// (`0.0.0.0`) for NSCA's port 5667. Absent (the default): the NSCA intake is disabled.
    pub listen: Option<String>,
    /// The password shared with the clients (`password=` in `send_nsca.cfg`); only used with
    /// encryption method 1. Absent: packets are XORed with the IV only.
    pub password: Option<String>,
    /// `encryption_method` as in `send_nsca.cfg`: 0 (none) or 1 (XOR). Must match the clients.
    #[serde(deserialize_with = "de_encryption")]
    pub encryption: u8,
    /// A connection on which the client sends no complete packet for this long is closed
    /// (e.g. `10s`); covers clients that connect and send nothing.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for NscaConfig {
    fn default() -> Self {
        NscaConfig {
            listen: None,
            password: None,
            encryption: ENCRYPT_XOR,
            idle_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

impl NscaConfig {
    /// The address to bind, with port 5667 added when `listen` names only a host or an IP
    /// address; `None` when the intake is disabled.
    pub fn listen_addr(&self) -> Option<String> {
        let listen = self.listen.as_deref()?.trim();
        if listen.parse::<SocketAddr>().is_ok() {
            return Some(listen.to_string());
        }
        if let Ok(ip) = listen.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, DEFAULT_PORT).to_string());
        }
        if listen.contains(':') {
            Some(listen.to_string())
        } else {
            Some(format!("{listen}:{DEFAULT_PORT}"))
        }
    }

    /// Checks what serde cannot: a connection cap of at least 1, a non-zero timeout and a
    /// password `send_nsca` can hold.
    pub fn validate(&self) -> Result<(), NscaError> {
        if self.encryption > ENCRYPT_XOR {
            return Err(NscaError::Config(format!(
                "encryption {} is not supported (0: none, 1: XOR)",
                self.encryption
            )));
        }
        if self.max_connections == 0 {
            return Err(NscaError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(NscaError::Config("idle_timeout must not be 0".into()));
        }
        if let Some(p) = &self.password {
            if p.len() > MAX_PASSWORD_LEN {
                return Err(NscaError::Config(format!(
                    "password is longer than {MAX_PASSWORD_LEN} bytes, send_nsca would cut it"
                )));
            }
            if p.contains('\0') {
                return Err(NscaError::Config("password contains a NUL byte".into()));
            }
        }
        Ok(())
    }

    fn password_bytes(&self) -> &[u8] {
        self.password
            .as_deref()
            .map(str::as_bytes)
            .unwrap_or_default()
    }
}

fn de_encryption<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = u8::deserialize(d)?;
    if v > ENCRYPT_XOR {
        return Err(serde::de::Error::custom(format!(
            "encryption {v} is not supported: 0 (none) or 1 (XOR)"
        )));
    }
    Ok(v)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::rules::parser::parse_duration(&s)
        .filter(|ns| *ns > 0)
        .map(|ns| Duration::from_nanos(ns as u64))
        .ok_or_else(|| {
            serde::de::Error::custom(format!("'{s}' is not a duration such as 10s or 500ms"))
        })
}

/// What the NSCA intake has seen since it started.
#[derive(Debug, Default)]
pub struct NscaCounters {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Data packets turned into check results.
    pub packets_accepted: AtomicU64,
    /// Packets dropped for a CRC mismatch (often a wrong password or encryption method).
    pub rejected_crc: AtomicU64,
    /// Packets dropped for a packet version other than 3.
    pub rejected_version: AtomicU64,
    /// Packets with a valid CRC but unusable content (e.g. no host name), or cut short.
    pub rejected_decode: AtomicU64,
    /// Connections closed because the client sent no complete packet within `idle_timeout`.
    pub timeouts: AtomicU64,
}

/// A plain copy of [`NscaCounters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NscaCountersSnapshot {
    /// Connections accepted.
    pub connections: u64,
    /// Data packets turned into check results.
    pub packets_accepted: u64,
    /// Packets dropped for a CRC mismatch.
    pub rejected_crc: u64,
    /// Packets dropped for a wrong packet version.
    pub rejected_version: u64,
    /// Packets dropped for unusable content or cut short.
    pub rejected_decode: u64,
    /// Connections closed by the idle timeout.
    pub timeouts: u64,
}

impl NscaCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> NscaCountersSnapshot {
        NscaCountersSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            packets_accepted: self.packets_accepted.load(Ordering::Relaxed),
            rejected_crc: self.rejected_crc.load(Ordering::Relaxed),
            rejected_version: self.rejected_version.load(Ordering::Relaxed),
            rejected_decode: self.rejected_decode.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }

    fn count(&self, err: &NscaError) {
        let c = match err {
            NscaError::BadCrc { .. } => &self.rejected_crc,
            NscaError::BadVersion(_) => &self.rejected_version,
            NscaError::Decode(_) | NscaError::Truncated { .. } => &self.rejected_decode,
            NscaError::Timeout => &self.timeouts,
            NscaError::Io(_) | NscaError::Config(_) | NscaError::Closed => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a packet or a connection was given up.
#[derive(Debug, thiserror::Error)]
pub enum NscaError {
    /// The packet's CRC-32 does not match its content: corrupted, or the client uses another
    /// password or encryption method.
    #[error(
        "CRC-32 mismatch (packet says {sent:#010x}, content gives {computed:#010x}): wrong password or encryption method?"
    )]
    BadCrc {
        /// The CRC the packet carries.
        sent: u32,
        /// The CRC of the packet's content.
        computed: u32,
    },
    /// The packet version is not 3: another protocol, or a wrong password or method.
    #[error("packet version {0} (expected 3): wrong password or encryption method?")]
    BadVersion(i16),
    /// The packet is authentic but unusable.
    #[error("unusable packet: {0}")]
    Decode(String),
    /// The client closed the connection in the middle of a packet.
    #[error("connection closed after {got} bytes of a packet")]
    Truncated {
        /// Bytes of the packet received.
        got: usize,
    },
    /// The client sent no complete packet within the idle timeout.
    #[error("no complete packet within the idle timeout")]
    Timeout,
    /// The check result channel is closed: alertd is shutting down.
    #[error("check result channel closed")]
    Closed,
    /// A socket error.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The configuration is unusable.
    #[error("NSCA configuration: {0}")]
    Config(String),
}

/// One decoded NSCA data packet, before it becomes a [`CheckResult`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NscaPacket {
    /// Timestamp field (Unix seconds; `send_nsca` echoes the server's init packet).
    pub timestamp: u32,
    /// Plugin return code.
    pub return_code: i16,
    /// Host name.
    pub host: String,
    /// Service description; empty for a host check.
    pub service: String,
    /// Plugin output.
    pub output: String,
}

impl NscaPacket {
    /// The check result this packet reports.
    pub fn into_check_result(self) -> CheckResult {
        CheckResult {
            host: self.host,
            service: (!self.service.is_empty()).then_some(self.service),
            code: i32::from(self.return_code),
            output: self.output,
            time_ns: Some(i64::from(self.timestamp) * 1_000_000_000),
            ttl_ns: None,
            via: "nsca",
        }
    }
}

/// XORs `buf` in place as NSCA's method 1 does: every byte with the IV byte at its position
/// (cycling over the 128 IV bytes), then with the password byte at its position (cycling over
/// the password, skipped when there is none). Encrypting and decrypting are the same
/// operation. `buf` must start at the beginning of a packet.
pub fn xor_crypt(buf: &mut [u8], iv: &[u8; IV_SIZE], password: &[u8]) {
    for (b, k) in buf.iter_mut().zip(iv.iter().cycle()) {
        *b ^= k;
    }
    if !password.is_empty() {
        for (b, k) in buf.iter_mut().zip(password.iter().cycle()) {
            *b ^= k;
        }
    }
}

fn crypt(buf: &mut [u8], method: u8, iv: &[u8; IV_SIZE], password: &[u8]) {
    if method == ENCRYPT_XOR {
        xor_crypt(buf, iv, password);
    }
}

/// The CRC-32 NSCA puts in a packet: over all of `packet` with the CRC field taken as zero.
fn packet_crc(packet: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&packet[..CRC_AT]);
    h.update(&[0; 4]);
    h.update(&packet[CRC_AT + 4..]);
    h.finalize()
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// The text of a C char array: up to the first NUL, invalid UTF-8 replaced.
fn c_string(field: &[u8]) -> String {
    let end = memchr::memchr(0, field).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Copies `s` into a char array, cut so a terminating NUL always fits (as `send_nsca` does).
fn put_c_string(field: &mut [u8], s: &str) {
    let n = s.len().min(field.len() - 1);
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
    field[n] = 0;
}

/// Builds the bytes `send_nsca` would send for `p`: a v3 packet of [`PACKET_SIZE`] bytes, or
/// with `legacy` a [`LEGACY_PACKET_SIZE`] one; unused bytes are random as with `send_nsca`,
/// strings are cut to fit, and the packet is encrypted with `method`.
pub fn encode_packet(
    p: &NscaPacket,
    legacy: bool,
    method: u8,
    iv: &[u8; IV_SIZE],
    password: &[u8],
) -> Vec<u8> {
    let size = if legacy {
        LEGACY_PACKET_SIZE
    } else {
        PACKET_SIZE
    };
    let output_len = if legacy {
        LEGACY_OUTPUT_LEN
    } else {
        OUTPUT_LEN
    };
    let mut b = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut b);
    b[0..2].copy_from_slice(&PACKET_VERSION.to_be_bytes());
    b[TIMESTAMP_AT..TIMESTAMP_AT + 4].copy_from_slice(&p.timestamp.to_be_bytes());
    b[RETURN_CODE_AT..RETURN_CODE_AT + 2].copy_from_slice(&p.return_code.to_be_bytes());
    put_c_string(&mut b[HOST_AT..HOST_AT + HOST_LEN], &p.host);
    put_c_string(&mut b[SERVICE_AT..SERVICE_AT + SERVICE_LEN], &p.service);
    put_c_string(&mut b[OUTPUT_AT..OUTPUT_AT + output_len], &p.output);
    let crc = packet_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    crypt(&mut b, method, iv, password);
    b
}

/// Decodes one packet of [`PACKET_SIZE`] or [`LEGACY_PACKET_SIZE`] bytes, decrypted in place
/// with `method`. Checks, in NSCA's order, the version and then the CRC.
pub fn decode_packet(
    buf: &mut [u8],
    method: u8,
    iv: &[u8; IV_SIZE],
    password: &[u8],
) -> Result<NscaPacket, NscaError> {
    let output_len = match buf.len() {
        PACKET_SIZE => OUTPUT_LEN,
        LEGACY_PACKET_SIZE => LEGACY_OUTPUT_LEN,
        n => return Err(NscaError::Decode(format!("packet of {n} bytes"))),
    };
    crypt(buf, method, iv, password);
    check_decrypted(buf)?;
    parse_fields(buf, output_len)
}

/// Version, then CRC, of a decrypted packet.
fn check_decrypted(buf: &[u8]) -> Result<(), NscaError> {
    let version = be_i16(buf, 0);
    if version != PACKET_VERSION {
        return Err(NscaError::BadVersion(version));
    }
    let sent = be_u32(buf, CRC_AT);
    let computed = packet_crc(buf);
    if sent != computed {
        return Err(NscaError::BadCrc { sent, computed });
    }
    Ok(())
}

fn parse_fields(buf: &[u8], output_len: usize) -> Result<NscaPacket, NscaError> {
    let host = c_string(&buf[HOST_AT..HOST_AT + HOST_LEN]);
    if host.is_empty() {
        return Err(NscaError::Decode("empty host name".into()));
    }
    Ok(NscaPacket {
        timestamp: be_u32(buf, TIMESTAMP_AT),
        return_code: be_i16(buf, RETURN_CODE_AT),
        host,
        service: c_string(&buf[SERVICE_AT..SERVICE_AT + SERVICE_LEN]),
        output: c_string(&buf[OUTPUT_AT..OUTPUT_AT + output_len]),
    })
}

/// Accepts NSCA connections on `listener` until `tx` is closed, at most
/// `cfg.max_connections` at once, and sends every accepted check result to `tx` (waiting
/// while it is full, so a slow consumer slows the clients down instead of losing results).
pub async fn serve(
    listener: TcpListener,
    cfg: Arc<NscaConfig>,
    tx: mpsc::Sender<CheckResult>,
    counters: Arc<NscaCounters>,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = tx.closed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tx.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "NSCA accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let (cfg, tx, counters) = (cfg.clone(), tx.clone(), counters.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            if let Err(e) = handle_connection(stream, &cfg, &tx, &counters).await {
                match e {
                    NscaError::Io(_) | NscaError::Closed => {
                        tracing::debug!(%peer, error = %e, "NSCA connection ended")
                    }
                    _ => tracing::warn!(%peer, error = %e, "NSCA connection closed"),
                }
            }
        });
    }
}

/// Serves one NSCA connection: sends the init packet, then reads data packets until the
/// client closes it. Every packet-level failure is counted in `counters` before it is
/// returned; the connection is given up on the first one, as NSCA does.
pub async fn handle_connection<S>(
    mut stream: S,
    cfg: &NscaConfig,
    tx: &mpsc::Sender<CheckResult>,
    counters: &NscaCounters,
) -> Result<(), NscaError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let res = connection(&mut stream, cfg, tx, counters).await;
    if let Err(e) = &res {
        counters.count(e);
    }
    res
}

async fn connection<S>(
    stream: &mut S,
    cfg: &NscaConfig,
    tx: &mpsc::Sender<CheckResult>,
    counters: &NscaCounters,
) -> Result<(), NscaError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut iv = [0u8; IV_SIZE];
    rand::thread_rng().fill_bytes(&mut iv);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let mut init = [0u8; INIT_PACKET_SIZE];
    init[..IV_SIZE].copy_from_slice(&iv);
    init[IV_SIZE..].copy_from_slice(&now.to_be_bytes());
    with_timeout(cfg.idle_timeout, async {
        stream.write_all(&init).await?;
        stream.flush().await
    })
    .await??;

    let password = cfg.password_bytes();
    // The key stream of this connection: the same for every packet (both the IV and the
    // password restart at each packet), so it is computed once and applied with a plain XOR.
    let keys = (cfg.encryption == ENCRYPT_XOR).then(|| {
        let mut k = vec![0u8; PACKET_SIZE];
        xor_crypt(&mut k, &iv, password);
        k
    });
    let decrypt = |buf: &mut [u8], from: usize| {
        if let Some(k) = &keys {
            for (b, k) in buf.iter_mut().zip(&k[from..]) {
                *b ^= k;
            }
        }
    };
    let mut raw = vec![0u8; PACKET_SIZE];
    loop {
        // The first part, which may be a whole legacy packet.
        let got = with_timeout(
            cfg.idle_timeout,
            read_full(stream, &mut raw[..LEGACY_PACKET_SIZE]),
        )
        .await??;
        if got == 0 {
            return Ok(());
        }
        if got < LEGACY_PACKET_SIZE {
            return Err(NscaError::Truncated { got });
        }
        // Decrypted in place once: a legacy packet and the start of a v3 one share the key
        // stream's positions.
        decrypt(&mut raw[..LEGACY_PACKET_SIZE], 0);
        let packet = match check_decrypted(&raw[..LEGACY_PACKET_SIZE]) {
            Ok(()) => parse_fields(&raw[..LEGACY_PACKET_SIZE], LEGACY_OUTPUT_LEN),
            Err(e @ NscaError::BadVersion(_)) => return Err(e),
            Err(legacy_err) => {
                let rest = with_timeout(
                    cfg.idle_timeout,
                    read_full(stream, &mut raw[LEGACY_PACKET_SIZE..]),
                )
                .await??;
                if rest == 0 {
                    // A legacy-sized packet and then the end: a legacy packet with a bad CRC.
                    return Err(legacy_err);
                }
                if rest < PACKET_SIZE - LEGACY_PACKET_SIZE {
                    return Err(NscaError::Truncated {
                        got: LEGACY_PACKET_SIZE + rest,
                    });
                }
                decrypt(&mut raw[LEGACY_PACKET_SIZE..], LEGACY_PACKET_SIZE);
                check_decrypted(&raw)?;
                parse_fields(&raw, OUTPUT_LEN)
            }
        };
        match packet {
            Ok(p) => {
                counters.packets_accepted.fetch_add(1, Ordering::Relaxed);
                tx.send(p.into_check_result())
                    .await
                    .map_err(|_| NscaError::Closed)?;
            }
            Err(e) => {
                // Authentic but unusable: count it and go on with the next packet.
                tracing::warn!(error = %e, "NSCA packet dropped");
                counters.count(&e);
            }
        }
    }
}

async fn with_timeout<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, NscaError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| NscaError::Timeout)
}

/// Reads until `buf` is full or the peer closes; returns the bytes read.
async fn read_full<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]).await? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use tokio::net::TcpStream;

    fn pkt(host: &str, service: &str, code: i16, output: &str) -> NscaPacket {
        NscaPacket {
            timestamp: 1_700_000_000,
            return_code: code,
            host: host.into(),
            service: service.into(),
            output: output.into(),
        }
    }

    fn test_iv() -> [u8; IV_SIZE] {
        let mut iv = [0u8; IV_SIZE];
        for (i, b) in iv.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        iv
    }

    /// NSCA's own table-driven CRC-32 (polynomial 0xEDB88320, initial and final XOR
    /// 0xFFFFFFFF), written out to show `crc32fast` computes the same value.
    fn reference_crc(buf: &[u8]) -> u32 {
        let mut table = [0u32; 256];
        for (i, t) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
            *t = c;
        }
        let mut crc = 0xFFFF_FFFFu32;
        for &b in buf {
            crc = (crc >> 8) ^ table[((crc ^ u32::from(b)) & 0xFF) as usize];
        }
        crc ^ 0xFFFF_FFFF
    }

    #[test]
    fn layout_matches_the_c_struct_on_x86_64() {
        // int16 + 2 padding + u32 + u32 + int16 + 64 + 128 + 4096 = 4302, rounded up to the
        // struct's 4-byte alignment; the legacy packet is 3584 bytes shorter.
        assert_eq!(OUTPUT_AT, 2 + 2 + 4 + 4 + 2 + 64 + 128);
        assert_eq!(PACKET_SIZE, (OUTPUT_AT + OUTPUT_LEN).div_ceil(4) * 4);
        assert_eq!(
            LEGACY_PACKET_SIZE,
            PACKET_SIZE - (OUTPUT_LEN - LEGACY_OUTPUT_LEN)
        );
        let b = encode_packet(
            &pkt("web1", "disk", 2, "out"),
            false,
            ENCRYPT_NONE,
            &test_iv(),
            b"",
        );
        assert_eq!(b.len(), 4304);
        assert_eq!(&b[0..2], &[0, 3]);
        assert_eq!(&b[8..12], &1_700_000_000u32.to_be_bytes());
        assert_eq!(&b[12..14], &[0, 2]);
        assert_eq!(&b[14..19], b"web1\0");
        assert_eq!(&b[78..83], b"disk\0");
        assert_eq!(&b[206..210], b"out\0");
        let mut zeroed = b.clone();
        zeroed[4..8].fill(0);
        assert_eq!(&b[4..8], &reference_crc(&zeroed).to_be_bytes());
        assert_eq!(reference_crc(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trips_v3_and_legacy_with_every_method() {
        let iv = test_iv();
        let p = pkt(
            "db-01.example.org",
            "MySQL conn",
            1,
            "WARNING - 90 conns|c=90;80;100\nline 2",
        );
        for legacy in [false, true] {
            for (method, pw) in [(0, &b""[..]), (1, &b""[..]), (1, &b"s3cret"[..])] {
                let mut b = encode_packet(&p, legacy, method, &iv, pw);
                assert_eq!(b.len(), if legacy { 720 } else { 4304 });
                let got = decode_packet(&mut b, method, &iv, pw).expect("decodes");
                assert_eq!(got, p, "legacy={legacy} method={method}");
            }
        }
    }

    #[test]
    fn xor_uses_the_iv_then_the_password_cycling_from_the_packet_start() {
        let iv = test_iv();
        let mut b = vec![0u8; 300];
        xor_crypt(&mut b, &iv, b"abc");
        for (i, &x) in b.iter().enumerate() {
            assert_eq!(x, iv[i % 128] ^ b"abc"[i % 3], "byte {i}");
        }
        let mut c = vec![0u8; 300];
        xor_crypt(&mut c, &iv, b"");
        for (i, &x) in c.iter().enumerate() {
            assert_eq!(x, iv[i % 128], "byte {i}");
        }
        xor_crypt(&mut b, &iv, b"abc");
        assert!(b.iter().all(|&x| x == 0), "XOR twice is the identity");
    }

    #[test]
    fn wrong_password_or_iv_fails_the_crc() {
        let iv = test_iv();
        // Same first two bytes, so the version survives and the CRC catches it.
        let mut b = encode_packet(&pkt("h", "s", 0, "ok"), false, 1, &iv, b"s3cret-one");
        let err = decode_packet(&mut b, 1, &iv, b"s3cret-two").unwrap_err();
        assert!(matches!(err, NscaError::BadCrc { .. }), "{err}");
        let mut b = encode_packet(&pkt("h", "s", 0, "ok"), false, 1, &iv, b"pw");
        let mut other_iv = iv;
        other_iv[100] ^= 0xFF;
        let err = decode_packet(&mut b, 1, &other_iv, b"pw").unwrap_err();
        assert!(matches!(err, NscaError::BadCrc { .. }), "{err}");
    }

    #[test]
    fn corrupted_content_and_wrong_version_are_rejected() {
        let iv = test_iv();
        let mut b = encode_packet(&pkt("h", "s", 0, "ok"), false, 0, &iv, b"");
        b[300] ^= 1;
        assert!(matches!(
            decode_packet(&mut b, 0, &iv, b""),
            Err(NscaError::BadCrc { .. })
        ));
        let mut b = encode_packet(&pkt("h", "s", 0, "ok"), false, 0, &iv, b"");
        b[0..2].copy_from_slice(&2i16.to_be_bytes());
        let crc = packet_crc(&b);
        b[4..8].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_packet(&mut b, 0, &iv, b""),
            Err(NscaError::BadVersion(2))
        ));
        let mut short = vec![0u8; 100];
        assert!(matches!(
            decode_packet(&mut short, 0, &iv, b""),
            Err(NscaError::Decode(_))
        ));
    }

    #[test]
    fn strings_stop_at_the_first_nul_and_are_cut_to_fit() {
        let iv = test_iv();
        let long_host = "h".repeat(100);
        let long_out = "x".repeat(5000);
        let mut b = encode_packet(&pkt(&long_host, "", 3, &long_out), false, 0, &iv, b"");
        let p = decode_packet(&mut b, 0, &iv, b"").expect("decodes");
        assert_eq!(p.host.len(), 63);
        assert_eq!(p.output.len(), 4095);
        let r = p.into_check_result();
        assert_eq!(r.service, None, "empty service description is a host check");
        assert_eq!(r.code, 3);
        assert_eq!(r.time_ns, Some(1_700_000_000_000_000_000));
        assert_eq!(r.via, "nsca");
        // Bytes after the NUL (random in real packets) are ignored.
        let mut b = encode_packet(&pkt("h", "s", 0, "ok"), true, 0, &iv, b"");
        b[14..20].copy_from_slice(b"ab\0cd\xff");
        let crc = packet_crc(&b);
        b[4..8].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode_packet(&mut b, 0, &iv, b"").expect("decodes").host,
            "ab"
        );
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: NscaConfig = toml::from_str("").expect("empty config");
        assert_eq!(c, NscaConfig::default());
        assert_eq!(c.listen_addr(), None);
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections, 256);
        let c: NscaConfig = toml::from_str(
            "listen = \"0.0.0.0\"\npassword = \"pw\"\nencryption = 0\nidle_timeout = \"500ms\"\nmax_connections = 3",
        )
        .expect("full config");
        assert_eq!(c.listen_addr().as_deref(), Some("0.0.0.0:5667"));
        assert_eq!(c.idle_timeout, Duration::from_millis(500));
        c.validate().expect("valid");
        for (listen, want) in [
            ("127.0.0.1:7000", "127.0.0.1:7000"),
            ("::", "[::]:5667"),
            ("nagios.example.org", "nagios.example.org:5667"),
            ("nagios.example.org:1", "nagios.example.org:1"),
        ] {
            let c = NscaConfig {
                listen: Some(listen.into()),
                ..NscaConfig::default()
            };
            assert_eq!(c.listen_addr().as_deref(), Some(want));
        }
        let err = toml::from_str::<NscaConfig>("encryption = 3").unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!(toml::from_str::<NscaConfig>("port = 1").is_err());
        assert!(toml::from_str::<NscaConfig>("idle_timeout = \"soon\"").is_err());
        let c = NscaConfig {
            max_connections: 0,
            ..NscaConfig::default()
        };
        assert!(c.validate().is_err());
    }

    fn cfg(method: u8, password: Option<&str>, idle: Duration) -> NscaConfig {
        NscaConfig {
            listen: None,
            password: password.map(String::from),
            encryption: method,
            idle_timeout: idle,
            max_connections: 4,
        }
    }

    async fn read_init<S: AsyncRead + Unpin>(s: &mut S) -> ([u8; IV_SIZE], u32) {
        let mut init = [0u8; INIT_PACKET_SIZE];
        s.read_exact(&mut init).await.expect("init packet");
        let mut iv = [0u8; IV_SIZE];
        iv.copy_from_slice(&init[..IV_SIZE]);
        (iv, be_u32(&init, IV_SIZE))
    }

    #[tokio::test]
    async fn several_packets_of_both_sizes_on_one_connection() {
        let cfg = cfg(1, Some("pw"), Duration::from_secs(5));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::channel(16);
        let counters = NscaCounters::default();
        let client_side = async move {
            let (iv, ts) = read_init(&mut client).await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            assert!(u64::from(ts).abs_diff(now) < 5, "init timestamp is now");
            for (i, legacy) in [false, true, true, false].into_iter().enumerate() {
                let mut p = pkt("h", &format!("s{i}"), i as i16, &format!("out {i}"));
                p.timestamp = ts;
                let b = encode_packet(&p, legacy, 1, &iv, b"pw");
                client.write_all(&b).await.expect("write");
            }
            ts
        };
        let (ts, res) = tokio::join!(client_side, handle_connection(server, &cfg, &tx, &counters));
        res.expect("clean end");
        for i in 0..4 {
            let r = rx.try_recv().expect("result");
            assert_eq!(
                r,
                CheckResult {
                    host: "h".into(),
                    service: Some(format!("s{i}")),
                    code: i,
                    output: format!("out {i}"),
                    time_ns: Some(i64::from(ts) * 1_000_000_000),
                    ttl_ns: None,
                    via: "nsca",
                }
            );
        }
        assert!(rx.try_recv().is_err());
        let c = counters.snapshot();
        assert_eq!(c.packets_accepted, 4);
        assert_eq!(
            c.rejected_crc + c.rejected_version + c.rejected_decode + c.timeouts,
            0
        );
    }

    #[tokio::test]
    async fn a_bad_packet_is_counted_and_closes_the_connection() {
        let cfg = cfg(0, None, Duration::from_secs(5));
        for (corrupt, want_crc) in [(true, true), (false, false)] {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let (tx, mut rx) = mpsc::channel(16);
            let counters = NscaCounters::default();
            let client_side = async move {
                let (iv, _) = read_init(&mut client).await;
                let good = encode_packet(&pkt("h", "s", 0, "first"), false, 0, &iv, b"");
                client.write_all(&good).await.expect("write");
                let mut bad = encode_packet(&pkt("h", "s", 0, "second"), false, 0, &iv, b"");
                if corrupt {
                    bad[1000] ^= 0x40;
                } else {
                    bad[0..2].copy_from_slice(&7i16.to_be_bytes());
                }
                client.write_all(&bad).await.expect("write");
                let after = encode_packet(&pkt("h", "s", 0, "third"), false, 0, &iv, b"");
                // The server may already have closed its end.
                let _ = client.write_all(&after).await;
            };
            let (_, res) =
                tokio::join!(client_side, handle_connection(server, &cfg, &tx, &counters));
            let err = res.unwrap_err();
            assert_eq!(matches!(err, NscaError::BadCrc { .. }), want_crc, "{err}");
            assert_eq!(rx.try_recv().expect("first").output, "first");
            assert!(rx.try_recv().is_err(), "nothing after the bad packet");
            let c = counters.snapshot();
            assert_eq!(c.packets_accepted, 1);
            assert_eq!(c.rejected_crc, u64::from(want_crc));
            assert_eq!(c.rejected_version, u64::from(!want_crc));
        }
    }

    #[tokio::test]
    async fn a_truncated_packet_and_an_empty_host_are_counted_as_decode_errors() {
        let cfg = cfg(0, None, Duration::from_secs(5));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::channel(16);
        let counters = NscaCounters::default();
        let client_side = async move {
            let (iv, _) = read_init(&mut client).await;
            let b = encode_packet(&pkt("", "s", 0, "no host"), false, 0, &iv, b"");
            client.write_all(&b).await.expect("write");
            let b = encode_packet(&pkt("h", "s", 0, "cut"), false, 0, &iv, b"");
            client.write_all(&b[..2000]).await.expect("write");
        };
        let (_, res) = tokio::join!(client_side, handle_connection(server, &cfg, &tx, &counters));
        assert!(
            matches!(res, Err(NscaError::Truncated { got: 2000 })),
            "{res:?}"
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(counters.snapshot().rejected_decode, 2);
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let cfg = cfg(0, None, Duration::from_millis(200));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (tx, _rx) = mpsc::channel(16);
        let counters = NscaCounters::default();
        let started = std::time::Instant::now();
        let client_side = async move {
            read_init(&mut client).await;
            // Half a packet, then nothing.
            client.write_all(&[0u8; 100]).await.expect("write");
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(client);
        };
        let res = tokio::select! {
            r = handle_connection(server, &cfg, &tx, &counters) => r,
            _ = client_side => panic!("the server did not time out"),
        };
        assert!(matches!(res, Err(NscaError::Timeout)), "{res:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(counters.snapshot().timeouts, 1);
    }

    async fn start(
        cfg: NscaConfig,
        capacity: usize,
    ) -> (
        SocketAddr,
        mpsc::Receiver<CheckResult>,
        Arc<NscaCounters>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel(capacity);
        let counters = Arc::new(NscaCounters::default());
        let task = tokio::spawn(serve(listener, Arc::new(cfg), tx, counters.clone()));
        (addr, rx, counters, task)
    }

    #[tokio::test]
    async fn serve_caps_connections_and_applies_back_pressure() {
        let mut c = cfg(0, None, Duration::from_secs(5));
        c.max_connections = 1;
        let (addr, mut rx, counters, task) = start(c, 1).await;

        let mut first = TcpStream::connect(addr).await.expect("connect");
        let (iv, _) = read_init(&mut first).await;
        // A second client is accepted by the kernel but gets no init packet while the first
        // holds the only slot.
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let mut init = [0u8; INIT_PACKET_SIZE];
        let waited =
            tokio::time::timeout(Duration::from_millis(300), second.read_exact(&mut init)).await;
        assert!(
            waited.is_err(),
            "second connection served beyond max_connections"
        );

        // Three packets into a channel of one: nothing is lost while nobody reads.
        for i in 0..3 {
            let b = encode_packet(&pkt("h", "s", 0, &format!("p{i}")), false, 0, &iv, b"");
            first.write_all(&b).await.expect("write");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..3 {
            let r = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("in time")
                .expect("result");
            assert_eq!(r.output, format!("p{i}"));
        }
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second.read_exact(&mut init))
            .await
            .expect("second served once the first left")
            .expect("init");
        assert_eq!(counters.snapshot().packets_accepted, 3);
        drop(rx);
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("serve ends when the channel closes")
            .expect("no panic");
    }

    fn send_nsca(port: u16, config: &str, args: &[&str], input: &str) -> std::process::Output {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("send_nsca.cfg");
        std::fs::write(&cfg_path, config).expect("write send_nsca.cfg");
        let child = Command::new("send_nsca")
            .args([
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-to",
                "10",
                "-c",
            ])
            .arg(&cfg_path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => panic!("cannot run send_nsca ({e}): install it with scripts/deps/nsca.sh"),
        };
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(input.as_bytes()).expect("feed send_nsca");
        }
        child.wait_with_output().expect("send_nsca ran")
    }

    async fn run_send_nsca(
        port: u16,
        config: &str,
        args: &[&str],
        input: &str,
    ) -> std::process::Output {
        let (config, input) = (config.to_string(), input.to_string());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            send_nsca(port, &config, &args, &input)
        })
        .await
        .expect("send_nsca thread")
    }

    fn assert_sent(out: &std::process::Output, packets: usize) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("{packets} data packet(s) sent")),
            "send_nsca failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn wait_for(counters: &NscaCounters, done: impl Fn(&NscaCountersSnapshot) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done(&counters.snapshot()) {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                counters.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn expect(r: CheckResult, service: Option<&str>, code: i32, output: &str, t0: i64) {
        let t = r.time_ns.expect("time") / 1_000_000_000;
        assert!((t0 - 1..=t0 + 10).contains(&t), "time {t} vs start {t0}");
        assert_eq!(
            r,
            CheckResult {
                host: "host".into(),
                service: service.map(String::from),
                code,
                output: output.into(),
                time_ns: r.time_ns,
                ttl_ns: None,
                via: "nsca",
            }
        );
    }

    /// `send_nsca` 2.10 separates results with ETB (0x17); newlines belong to the output.
    const INPUT: &str =
        "host\tservice\t2\tDISK CRITICAL - /var 97%|var=97%;90;95\n\x17host\t0\tUP\n";
    const DISK: &str = "DISK CRITICAL - /var 97%|var=97%;90;95";

    #[tokio::test]
    async fn the_real_send_nsca_client() {
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        for (method, password) in [(0, None), (1, None), (1, Some("s3cret-one"))] {
            let (addr, mut rx, counters, task) =
                start(cfg(method, password, Duration::from_secs(5)), 16).await;
            let mut config = format!("encryption_method={method}\n");
            if let Some(p) = password {
                config.push_str(&format!("password={p}\n"));
            }
            for legacy in [false, true] {
                let args: &[&str] = if legacy { &["--legacy-2-7-mode"] } else { &[] };
                assert_sent(&run_send_nsca(addr.port(), &config, args, INPUT).await, 2);
                let ctx = format!("method {method} password {password:?} legacy {legacy}");
                let r = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
                let r = r.unwrap_or_else(|_| panic!("{ctx}: {:?}", counters.snapshot()));
                expect(r.expect("result"), Some("service"), 2, DISK, t0);
                let r = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
                expect(r.expect(&ctx).expect("result"), None, 0, "UP", t0);
            }
            // Lines separated by newlines only form one result with a multi-line output.
            let input = "host\tsvc\t1\tline one\nline two\n";
            assert_sent(&run_send_nsca(addr.port(), &config, &[], input).await, 1);
            let r = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            let r = r.expect("in time").expect("result");
            assert_eq!(r.output, "line one\nline two");
            wait_for(&counters, |c| c.packets_accepted == 5).await;
            let c = counters.snapshot();
            assert_eq!(c.connections, 3);
            assert_eq!(
                c.rejected_crc + c.rejected_version + c.rejected_decode + c.timeouts,
                0
            );
            task.abort();
        }

        // Output longer than a packet holds is cut by the client to 4095 bytes (v3) or 511
        // (legacy): the field sizes agree with the real client's.
        let (addr, mut rx, _counters, task) = start(cfg(0, None, Duration::from_secs(5)), 16).await;
        let long = "x".repeat(4500);
        for (args, keep) in [(&[][..], 4095), (&["--legacy-2-7-mode"][..], 511)] {
            let input = format!("host\tsvc\t3\t{long}\n");
            let out = run_send_nsca(addr.port(), "encryption_method=0\n", args, &input).await;
            assert_sent(&out, 1);
            let r = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            let r = r.expect("in time").expect("result");
            assert_eq!((r.code, r.output.len()), (3, keep), "{args:?}");
        }
        task.abort();

        // A client with another password: the packet fails the CRC and nothing is delivered.
        let (addr, mut rx, counters, task) =
            start(cfg(1, Some("s3cret-one"), Duration::from_secs(5)), 16).await;
        let input = "host\tservice\t2\tDISK CRITICAL\n";
        let config = "encryption_method=1\npassword=s3cret-two\n";
        assert_sent(&run_send_nsca(addr.port(), config, &[], input).await, 1);
        wait_for(&counters, |c| c.rejected_crc == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            rx.try_recv().is_err(),
            "a packet with a bad CRC was delivered"
        );
        let c = counters.snapshot();
        assert_eq!(
            (c.packets_accepted, c.rejected_crc, c.rejected_version),
            (0, 1, 0)
        );
        task.abort();
    }
}
