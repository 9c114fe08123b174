//! The backup file's outer container: plain, or encrypted with a passphrase.
//!
//! ```text
//! "CTBACKUP" u8 version (1) u8 mode (0 plain, 1 encrypted)
//! mode 0: the archive stream (`archive`) as it is
//! mode 1: u32 m_cost (KiB), u32 t_cost, u32 p_cost, 16-byte salt, 7-byte nonce prefix,
//!         16-byte key check, then chunks: u32 (bit 31: last chunk; the rest: length) and
//!         ChaCha20-Poly1305 ciphertext of up to 64 KiB of the archive stream
//! ```
//! The key is Argon2id(passphrase, salt) with the parameters in the header; chunk `n` uses the
//! nonce `prefix ‖ n (u32 BE) ‖ last (0/1)` and the whole header as associated data, so
//! reordered, dropped, truncated or altered chunks and edited parameters all fail to
//! decrypt. The key check (the tag of an empty message under the nonce `prefix ‖ FFFFFFFF ‖ 2`)
//! tells a wrong passphrase apart from a damaged file before anything else is read.

use std::io::{self, Read, Write};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

use super::BackupError;

pub const MAGIC: &[u8; 8] = b"CTBACKUP";
const VERSION: u8 = 1;
const CHUNK: usize = 64 * 1024;
const LAST: u32 = 1 << 31;
/// Argon2id cost: 64 MiB, 3 passes, 1 lane (about half a second on a school server).
const M_COST: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
/// Header bytes after the magic, version and mode: costs, salt, prefix, key check.
const PARAMS_LEN: usize = 12 + 16 + 7 + 16;

/// A passphrase read from its file (Debug prints `***`).
pub struct Passphrase(crate::secret::Secret);

impl Passphrase {
    /// Reads `path`; one trailing newline is not part of the passphrase.
    pub fn read(path: &std::path::Path) -> Result<Self, BackupError> {
        let text = std::fs::read_to_string(path).map_err(|source| BackupError::Passphrase {
            path: path.to_owned(),
            reason: source.to_string(),
        })?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Err(BackupError::Passphrase {
                path: path.to_owned(),
                reason: "the file is empty".into(),
            });
        }
        Ok(Self(crate::secret::Secret::from(text.to_owned())))
    }

    #[cfg(test)]
    pub fn from_text(text: &str) -> Self {
        Self(crate::secret::Secret::from(text.to_owned()))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

fn derive(
    passphrase: &Passphrase,
    salt: &[u8],
    costs: (u32, u32, u32),
) -> Result<ChaCha20Poly1305, BackupError> {
    let params = argon2::Params::new(costs.0, costs.1, costs.2, Some(32))
        .map_err(|e| BackupError::Corrupt(format!("bad key parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase.0.expose().as_bytes(), salt, &mut key)
        .map_err(|e| BackupError::Corrupt(format!("cannot derive the key: {e}")))?;
    Ok(ChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"))
}

fn nonce(prefix: &[u8; 7], counter: u32, flag: u8) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[..7].copy_from_slice(prefix);
    bytes[7..11].copy_from_slice(&counter.to_be_bytes());
    bytes[11] = flag;
    Nonce::from(bytes)
}

/// Where the archive stream goes: straight to the file, or through the cipher.
pub enum Sealer<W: Write> {
    Plain(W),
    Encrypted(Box<Encrypting<W>>),
}

pub struct Encrypting<W: Write> {
    out: W,
    cipher: ChaCha20Poly1305,
    prefix: [u8; 7],
    aad: Vec<u8>,
    counter: u32,
    buffer: Vec<u8>,
}

impl<W: Write> Sealer<W> {
    /// Writes the container header; encrypts with `passphrase` when given.
    pub fn new(mut out: W, passphrase: Option<&Passphrase>) -> Result<Self, BackupError> {
        let Some(passphrase) = passphrase else {
            out.write_all(MAGIC).map_err(BackupError::Write)?;
            out.write_all(&[VERSION, 0]).map_err(BackupError::Write)?;
            return Ok(Self::Plain(out));
        };
        let mut salt = [0u8; 16];
        let mut prefix = [0u8; 7];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut prefix);
        let cipher = derive(passphrase, &salt, (M_COST, T_COST, P_COST))?;
        let mut aad = Vec::with_capacity(10 + PARAMS_LEN);
        aad.extend_from_slice(MAGIC);
        aad.extend_from_slice(&[VERSION, 1]);
        for cost in [M_COST, T_COST, P_COST] {
            aad.extend_from_slice(&cost.to_be_bytes());
        }
        aad.extend_from_slice(&salt);
        aad.extend_from_slice(&prefix);
        let check = key_check(&cipher, &prefix, &aad)?;
        aad.extend_from_slice(&check);
        out.write_all(&aad).map_err(BackupError::Write)?;
        Ok(Self::Encrypted(Box::new(Encrypting {
            out,
            cipher,
            prefix,
            aad,
            counter: 0,
            buffer: Vec::with_capacity(CHUNK),
        })))
    }

    /// Seals the last chunk and flushes; returns the file.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Sealer::Plain(mut out) => {
                out.flush()?;
                Ok(out)
            }
            Sealer::Encrypted(mut e) => {
                e.seal(true)?;
                e.out.flush()?;
                Ok(e.out)
            }
        }
    }
}

/// The key check: the tag of an empty message under a nonce no chunk uses.
fn key_check(
    cipher: &ChaCha20Poly1305,
    prefix: &[u8; 7],
    aad_without_check: &[u8],
) -> Result<Vec<u8>, BackupError> {
    cipher
        .encrypt(
            &nonce(prefix, u32::MAX, 2),
            Payload {
                msg: b"",
                aad: aad_without_check,
            },
        )
        .map_err(|_| BackupError::Corrupt("cannot compute the key check".into()))
}

impl<W: Write> Encrypting<W> {
    fn seal(&mut self, last: bool) -> io::Result<()> {
        let sealed = self
            .cipher
            .encrypt(
                &nonce(&self.prefix, self.counter, u8::from(last)),
                Payload {
                    msg: &self.buffer,
                    aad: &self.aad,
                },
            )
            .map_err(|_| io::Error::other("encryption failed"))?;
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("backup too large for one key"))?;
        let len = sealed.len() as u32 | if last { LAST } else { 0 };
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&sealed)?;
        self.buffer.clear();
        Ok(())
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        match self {
            Sealer::Plain(out) => out.write(data),
            Sealer::Encrypted(e) => {
                let total = data.len();
                while !data.is_empty() {
                    if e.buffer.len() == CHUNK {
                        e.seal(false)?;
                    }
                    let room = CHUNK - e.buffer.len();
                    let take = room.min(data.len());
                    e.buffer.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
                Ok(total)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealer::Plain(out) => out.flush(),
            // Chunks are only sealed when full or at the end.
            Sealer::Encrypted(_) => Ok(()),
        }
    }
}

/// Reads the archive stream back out of a backup file.
pub enum Opener<R: Read> {
    Plain(R),
    Encrypted(Box<Decrypting<R>>),
}

pub struct Decrypting<R: Read> {
    input: R,
    cipher: ChaCha20Poly1305,
    prefix: [u8; 7],
    aad: Vec<u8>,
    counter: u32,
    plain: Vec<u8>,
    at: usize,
    done: bool,
}

impl<R: Read> Opener<R> {
    /// Reads the container header; an encrypted file needs `passphrase`.
    pub fn new(mut input: R, passphrase: Option<&Passphrase>) -> Result<Self, BackupError> {
        let mut head = [0u8; 10];
        input.read_exact(&mut head).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                BackupError::Corrupt("not a Caretaker backup (too short)".into())
            }
            _ => BackupError::from_read(e),
        })?;
        if &head[..8] != MAGIC {
            return Err(BackupError::Corrupt("not a Caretaker backup".into()));
        }
        if head[8] != VERSION {
            return Err(BackupError::Corrupt(format!(
                "backup container version {} (this release reads {VERSION}): restore it with the \
                 release that wrote it",
                head[8]
            )));
        }
        match head[9] {
            0 => Ok(Self::Plain(input)),
            1 => {
                let Some(passphrase) = passphrase else {
                    return Err(BackupError::NeedsPassphrase);
                };
                let mut params = [0u8; PARAMS_LEN];
                input
                    .read_exact(&mut params)
                    .map_err(|_| BackupError::Corrupt("the header is cut short".into()))?;
                let cost = |i: usize| {
                    u32::from_be_bytes(params[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
                };
                let costs = (cost(0), cost(1), cost(2));
                // Bounds on what a damaged or hostile header can make us spend.
                if costs.0 > 4 * 1024 * 1024 || costs.1 > 64 || costs.2 > 64 {
                    return Err(BackupError::Corrupt("implausible key parameters".into()));
                }
                let salt = &params[12..28];
                let prefix: [u8; 7] = params[28..35].try_into().expect("7 bytes");
                let cipher = derive(passphrase, salt, costs)?;
                let mut aad = head.to_vec();
                aad.extend_from_slice(&params[..35]);
                let check = key_check(&cipher, &prefix, &aad)?;
                if !crate::secret::same(&check, &params[35..]) {
                    return Err(BackupError::WrongPassphrase);
                }
                aad.extend_from_slice(&params[35..]);
                Ok(Self::Encrypted(Box::new(Decrypting {
                    input,
                    cipher,
                    prefix,
                    aad,
                    counter: 0,
                    plain: Vec::new(),
                    at: 0,
                    done: false,
                })))
            }
            other => Err(BackupError::Corrupt(format!("unknown backup mode {other}"))),
        }
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl<R: Read> Decrypting<R> {
    fn next_chunk(&mut self) -> io::Result<()> {
        let mut len = [0u8; 4];
        if let Err(e) = self.input.read_exact(&mut len) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                corrupt("the file is cut short (its last chunk is missing)")
            } else {
                e
            });
        }
        let len = u32::from_be_bytes(len);
        let last = len & LAST != 0;
        let len = (len & !LAST) as usize;
        if len > CHUNK + 16 {
            return Err(corrupt("a chunk longer than any this format writes"));
        }
        let mut sealed = vec![0u8; len];
        self.input
            .read_exact(&mut sealed)
            .map_err(|_| corrupt("the file is cut short inside a chunk"))?;
        self.plain = self
            .cipher
            .decrypt(
                &nonce(&self.prefix, self.counter, u8::from(last)),
                Payload {
                    msg: &sealed,
                    aad: &self.aad,
                },
            )
            .map_err(|_| corrupt("a chunk fails its integrity check (the file is damaged)"))?;
        self.at = 0;
        self.counter = self.counter.wrapping_add(1);
        if last {
            self.done = true;
            let mut extra = [0u8; 1];
            if matches!(self.input.read(&mut extra), Ok(n) if n > 0) {
                return Err(corrupt("data after the last chunk"));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Opener::Plain(input) => input.read(buf),
            Opener::Encrypted(d) => {
                while d.at == d.plain.len() {
                    if d.done {
                        return Ok(0);
                    }
                    d.next_chunk()?;
                }
                let n = buf.len().min(d.plain.len() - d.at);
                buf[..n].copy_from_slice(&d.plain[d.at..d.at + n]);
                d.at += n;
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(data: &[u8], passphrase: Option<&Passphrase>) -> Vec<u8> {
        let mut sealer = Sealer::new(Vec::new(), passphrase).expect("header");
        sealer.write_all(data).expect("write");
        sealer.finish().expect("finish")
    }

    fn open(file: &[u8], passphrase: Option<&Passphrase>) -> Result<Vec<u8>, String> {
        let mut opener = Opener::new(file, passphrase).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        opener.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn encrypted_data_round_trips_and_does_not_show_the_plaintext() {
        let pass = Passphrase::from_text("correct horse");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let file = seal(&data, Some(&pass));
        assert_eq!(open(&file, Some(&pass)).expect("opens"), data);
        assert!(!file.windows(64).any(|w| w == &data[1000..1064]));
        let plain = seal(&data, None);
        assert_eq!(open(&plain, None).expect("opens"), data);
    }

    #[test]
    fn a_wrong_passphrase_a_cut_or_a_flipped_byte_is_an_error() {
        let pass = Passphrase::from_text("correct horse");
        let data = vec![7u8; 150_000];
        let file = seal(&data, Some(&pass));
        let wrong = open(&file, Some(&Passphrase::from_text("battery staple")))
            .expect_err("wrong passphrase");
        assert!(wrong.contains("passphrase"), "{wrong}");
        assert!(open(&file, None).expect_err("none").contains("passphrase"));
        // A cut at a chunk boundary too (after the first full chunk).
        for cut in [file.len() - 1, 10 + PARAMS_LEN + 4 + CHUNK + 16, 20] {
            assert!(open(&file[..cut], Some(&pass)).is_err(), "cut at {cut}");
        }
        for at in [
            12,
            40,
            70,
            10 + PARAMS_LEN + 2,
            10 + PARAMS_LEN + 100,
            file.len() - 3,
        ] {
            let mut bad = file.clone();
            bad[at] ^= 1;
            assert!(open(&bad, Some(&pass)).is_err(), "flip at {at}");
        }
    }
}
