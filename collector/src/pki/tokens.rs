//! Enrolment tokens: one string (`ct1_` + base64url JSON) carrying the token id, its secret,
//! the CA fingerprint to pin and the collector address(es). The collector keeps only the
//! secret's SHA-256, with the token's limits: uses, expiry, revocation.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Pki, PkiError, rfc3339};
use crate::secret;

/// A token as stored (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    #[serde(default)]
    pub label: String,
    pub secret_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
    /// `None`: any number of enrolments.
    #[serde(default)]
    pub max_uses: Option<u32>,
    #[serde(default)]
    pub used: u32,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenRecord {
    /// Whether it can enrol now, or why not.
    pub fn usable(&self, now: OffsetDateTime) -> Result<(), TokenError> {
        let name = self.name();
        if let Some(at) = self.revoked_at {
            return Err(TokenError::Revoked(name, rfc3339(at)));
        }
        if let Some(at) = self.expires_at
            && at <= now
        {
            return Err(TokenError::Expired(name, rfc3339(at)));
        }
        if let Some(max) = self.max_uses
            && self.used >= max
        {
            return Err(TokenError::UsedUp(name, max));
        }
        Ok(())
    }

    fn name(&self) -> String {
        if self.label.is_empty() {
            self.id.clone()
        } else {
            format!("{} ({})", self.id, self.label)
        }
    }

    /// `active`, `expired`, `used up` or `revoked`.
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        match self.usable(now) {
            Ok(()) => "active",
            Err(TokenError::Revoked(..)) => "revoked",
            Err(TokenError::Expired(..)) => "expired",
            Err(_) => "used up",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the enrolment token is wrong or missing")]
    Wrong,
    #[error(
        "the enrolment token {0} expired at {1}; make a new one with `caretaker-collector token create`"
    )]
    Expired(String, String),
    #[error(
        "the enrolment token {0} is used up ({1} enrolments); make a new one with `caretaker-collector token create`"
    )]
    UsedUp(String, u32),
    #[error(
        "the enrolment token {0} was revoked at {1}; make a new one with `caretaker-collector token create`"
    )]
    Revoked(String, String),
    #[error("no token {0}")]
    Unknown(String),
    #[error("cannot record the token: {0}")]
    Store(String),
}

/// What a token string carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenText {
    pub id: String,
    #[serde(rename = "s")]
    pub secret: String,
    /// CA certificate fingerprint (SHA-256 of the DER, hex).
    #[serde(rename = "fp")]
    pub fingerprint: String,
    /// Collector addresses, `host:port`.
    #[serde(rename = "a", default)]
    pub addresses: Vec<String>,
}

pub const PREFIX: &str = "ct1_";

impl TokenText {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("plain struct serialises");
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    }

    pub fn decode(text: &str) -> Option<Self> {
        let body = text.trim().strip_prefix(PREFIX)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

impl Pki {
    /// A new token; the string is shown once (only its secret's hash is kept).
    pub fn create_token(
        &self,
        uses: Option<u32>,
        expires: Option<Duration>,
        label: &str,
    ) -> Result<(TokenRecord, String), PkiError> {
        let now = OffsetDateTime::now_utc();
        let id = format!("tok-{}", secret::random_hex(4));
        let secret_text = secret::random_hex(24);
        let record = TokenRecord {
            id: id.clone(),
            label: label.to_owned(),
            secret_sha256: hex::encode(secret::sha256(secret_text.as_bytes())),
            created_at: now,
            expires_at: expires
                .map(|d| now + time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
            max_uses: uses,
            used: 0,
            revoked_at: None,
        };
        let text = TokenText {
            id,
            secret: secret_text,
            fingerprint: self.fingerprint(),
            addresses: self.advertised(),
        }
        .encode();
        let mut state = self.lock();
        state.tokens.push(record.clone());
        self.save_tokens(&state.tokens)?;
        Ok((record, text))
    }

    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.lock().tokens.clone()
    }

    pub fn revoke_token(&self, id: &str) -> Result<TokenRecord, TokenError> {
        let mut state = self.lock();
        let token = state
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| TokenError::Unknown(id.to_owned()))?;
        if token.revoked_at.is_none() {
            token.revoked_at = Some(OffsetDateTime::now_utc());
        }
        let token = token.clone();
        self.save_tokens(&state.tokens)
            .map_err(|e| TokenError::Store(e.to_string()))?;
        Ok(token)
    }

    /// Takes one use of the token `presented` (a token string, or a bare secret from a
    /// configured `enroll_token_file`); [`Pki::release`] gives it back if enrolment fails.
    pub fn reserve(&self, presented: &str) -> Result<String, TokenError> {
        let presented = presented.trim();
        let (id, secret_text) = match TokenText::decode(presented) {
            Some(text) => (Some(text.id), text.secret),
            None => (None, presented.to_owned()),
        };
        let hash = hex::encode(secret::sha256(secret_text.as_bytes()));
        let now = OffsetDateTime::now_utc();
        let mut state = self.lock();
        let token = state
            .tokens
            .iter_mut()
            .find(|t| {
                id.as_ref().is_none_or(|id| *id == t.id)
                    && secret::same(t.secret_sha256.as_bytes(), hash.as_bytes())
            })
            .ok_or(TokenError::Wrong)?;
        token.usable(now)?;
        token.used += 1;
        let id = token.id.clone();
        self.save_tokens(&state.tokens)
            .map_err(|e| TokenError::Store(e.to_string()))?;
        Ok(id)
    }

    /// Gives back a use taken by [`Pki::reserve`] (the enrolment did not happen).
    pub fn release(&self, id: &str) {
        let mut state = self.lock();
        if let Some(token) = state.tokens.iter_mut().find(|t| t.id == id) {
            token.used = token.used.saturating_sub(1);
            if let Err(error) = self.save_tokens(&state.tokens) {
                tracing::warn!(%error, token = id, "Could not give a token use back");
            }
        }
    }

    /// The token the `enroll-token` file holds: with `configured`, that file's content (a bare
    /// secret there is accepted as an unlimited token); otherwise `default`, rewritten with a
    /// fresh token (30 days, any number of PCs) when missing or no longer usable.
    pub fn file_token(
        &self,
        configured: Option<&Path>,
        default: &Path,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        if let Some(path) = configured {
            let text = std::fs::read_to_string(path)
                .map_err(|source| PkiError::Io {
                    path: path.to_owned(),
                    source,
                })?
                .trim()
                .to_owned();
            if TokenText::decode(&text).is_none() {
                let hash = hex::encode(secret::sha256(text.as_bytes()));
                let mut state = self.lock();
                if !state.tokens.iter().any(|t| t.secret_sha256 == hash) {
                    state.tokens.push(TokenRecord {
                        id: "tok-file".to_owned(),
                        label: "enroll_token_file".to_owned(),
                        secret_sha256: hash,
                        created_at: now,
                        expires_at: None,
                        max_uses: None,
                        used: 0,
                        revoked_at: None,
                    });
                    self.save_tokens(&state.tokens)?;
                }
            }
            return Ok(text);
        }
        if let Ok(text) = std::fs::read_to_string(default)
            && let Some(parsed) = TokenText::decode(&text)
        {
            let state = self.lock();
            let usable = state
                .tokens
                .iter()
                .find(|t| t.id == parsed.id)
                .is_some_and(|t| t.usable(now).is_ok());
            if usable && parsed.fingerprint == state.current.fingerprint {
                return Ok(text.trim().to_owned());
            }
        }
        let (record, text) = self.create_token(
            None,
            Some(Duration::from_secs(30 * 24 * 3600)),
            "enroll-token file",
        )?;
        super::write_atomic(default, format!("{text}\n").as_bytes(), true)?;
        tracing::info!(token = %record.id, path = %default.display(),
            "Wrote a new enrolment token (30 days, any number of PCs)");
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::TlsConfig;
    use super::*;

    #[test]
    fn a_token_string_round_trips_and_carries_the_pin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::open(dir.path(), TlsConfig::default(), 50051).expect("open");
        let (record, text) = pki.create_token(Some(1), None, "lab").expect("create");
        let parsed = TokenText::decode(&text).expect("decodes");
        assert_eq!(parsed.id, record.id);
        assert_eq!(parsed.fingerprint, pki.fingerprint());
        assert!(
            !serde_json::to_string(&pki.tokens())
                .expect("json")
                .contains(&parsed.secret)
        );
    }

    #[test]
    fn used_up_expired_revoked_and_wrong_tokens_are_refused_with_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::open(dir.path(), TlsConfig::default(), 50051).expect("open");
        let (_, once) = pki.create_token(Some(1), None, "").expect("create");
        pki.reserve(&once).expect("first use");
        assert!(matches!(pki.reserve(&once), Err(TokenError::UsedUp(_, 1))));
        let (_, expired) = pki
            .create_token(None, Some(Duration::ZERO), "")
            .expect("create");
        assert!(matches!(
            pki.reserve(&expired),
            Err(TokenError::Expired(..))
        ));
        let (record, revoked) = pki.create_token(None, None, "").expect("create");
        pki.revoke_token(&record.id).expect("revoke");
        assert!(matches!(
            pki.reserve(&revoked),
            Err(TokenError::Revoked(..))
        ));
        let mut wrong = TokenText::decode(&revoked).expect("decodes");
        wrong.secret = "0".repeat(48);
        assert_eq!(pki.reserve(&wrong.encode()), Err(TokenError::Wrong));
        // A released use can be taken again.
        let (record, twice) = pki.create_token(Some(1), None, "").expect("create");
        let id = pki.reserve(&twice).expect("use");
        assert_eq!(id, record.id);
        pki.release(&id);
        pki.reserve(&twice).expect("use again");
    }
}
