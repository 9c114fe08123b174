//! SMTP delivery with lettre: transport set-up (none / STARTTLS / implicit TLS, AUTH, CA file)
//! and turning one outbox entry into one SMTP transaction.
//!
//! Errors are sorted into what the outbox does next: a 5xx reply is permanent (the entry
//! fails with the server's words), anything else (connection refused, timeout, 4xx, TLS
//! handshake trouble) is retried with backoff.

use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::AlertError;
use super::config::{Password, SmtpConfig, SmtpSecurity};
use crate::model::OutboxEntry;

/// Why one send did not go through.
#[derive(Debug, Clone)]
pub struct SendFailure {
    /// A 5xx reply: retrying will not help.
    pub permanent: bool,
    /// We never got to talk to the server (down, refused, TLS failure): an outage.
    pub unreachable: bool,
    pub reason: String,
}

/// A configured SMTP client (one connection pool per alerting task).
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(config: &SmtpConfig, password: Option<Password>) -> Result<Self, AlertError> {
        let from: Mailbox = config.from.parse().map_err(|e| AlertError::Address {
            address: config.from.clone(),
            reason: format!("{e}"),
        })?;
        let tls = match config.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Starttls => Tls::Required(tls_parameters(config)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(config)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.server)
            .port(config.port)
            .tls(tls)
            .timeout(Some(config.timeout));
        if let Some(username) = &config.username {
            let password = password.ok_or_else(|| AlertError::Password {
                reason: format!(
                    "smtp.username is set but there is no password (smtp.password_file or {})",
                    super::config::PASSWORD_ENV
                ),
            })?;
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one entry; `Ok` carries the server's reply (`250 ...`).
    pub async fn send(&self, entry: &OutboxEntry) -> Result<String, SendFailure> {
        let message = self.message(entry).map_err(|reason| SendFailure {
            permanent: true,
            unreachable: false,
            reason,
        })?;
        match self.transport.send(message).await {
            Ok(response) => Ok(reply_text(&response)),
            Err(error) => Err(classify(&error)),
        }
    }

    fn message(&self, entry: &OutboxEntry) -> Result<Message, String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(entry.subject.clone())
            .message_id(Some(entry.message_id.clone()))
            .date(SystemTime::from(entry.created_at));
        for to in &entry.to {
            let mailbox: Mailbox = to
                .parse()
                .map_err(|e| format!("recipient {to:?} is not an address: {e}"))?;
            builder = builder.to(mailbox);
        }
        if let Some(parent) = &entry.in_reply_to {
            builder = builder.in_reply_to(parent.clone());
        }
        if !entry.references.is_empty() {
            builder = builder.references(entry.references.join(" "));
        }
        let mut message = if !entry.attachments.is_empty() {
            use base64::Engine as _;
            let mut mixed = MultiPart::mixed().singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(entry.text.clone()),
            );
            for file in &entry.attachments {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&file.base64)
                    .map_err(|e| format!("attachment {} is not base64: {e}", file.filename))?;
                let kind = ContentType::parse(&file.content_type)
                    .map_err(|e| format!("attachment {} has a bad type: {e}", file.filename))?;
                mixed = mixed.singlepart(
                    lettre::message::Attachment::new(file.filename.clone()).body(bytes, kind),
                );
            }
            builder.multipart(mixed)
        } else if entry.html.is_empty() {
            builder
                .header(ContentType::TEXT_PLAIN)
                .body(entry.text.clone())
        } else {
            builder.multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(entry.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(entry.html.clone()),
                    ),
            )
        }
        .map_err(|e| format!("cannot build the message: {e}"))?;
        if !entry.incident_ids.is_empty() {
            message.headers_mut().insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Caretaker-Incidents"),
                entry.incident_ids.join(" "),
            ));
        }
        Ok(message)
    }
}

fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, AlertError> {
    let mut builder = TlsParameters::builder(config.server.clone());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| AlertError::CaFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| AlertError::CaFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| AlertError::Tls {
        reason: e.to_string(),
    })
}

/// `250 2.0.0 Ok: queued as ...` from a lettre response.
fn reply_text(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), lines.join(" / "))
}

fn classify(error: &lettre::transport::smtp::Error) -> SendFailure {
    // The whole chain: lettre's Display hides the server's words in the source.
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    SendFailure {
        permanent: error.is_permanent(),
        unreachable: !error.is_permanent() && !error.is_transient(),
        reason,
    }
}

/// Delay before retry number `attempts` (1-based): `initial` doubling up to `max`.
pub fn retry_delay(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let shift = attempts.saturating_sub(1).min(20);
    initial.saturating_mul(1u32 << shift).min(max)
}

/// Sends one test message and returns what the server said.
pub async fn test_email(config: &SmtpConfig, to: Option<&str>) -> Result<String, AlertError> {
    let password = config
        .password(|k| std::env::var(k).ok())
        .map_err(|reason| AlertError::Password { reason })?;
    let mailer = Mailer::new(config, password)?;
    let to = to.map_or_else(|| config.to.clone(), |t| vec![t.to_owned()]);
    let now = time::OffsetDateTime::now_utc();
    let nonce: u64 = rand::random();
    let entry = OutboxEntry {
        subject: "[Caretaker] Test message".to_owned(),
        text: format!(
            "This is a test message from Caretaker, sent through {}:{} (security: {:?}).\n\
             If you can read it, incident alerts will reach this address.\n",
            config.server, config.port, config.security
        ),
        message_id: format!("<test.{nonce:016x}@caretaker>"),
        ..OutboxEntry::pending("test".to_owned(), now, now, to)
    };
    mailer
        .send(&entry)
        .await
        .map_err(|failure| AlertError::Send {
            reason: failure.reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn retry_delay_doubles_and_stays_within_bounds(attempts in 0u32..10_000, initial_ms in 1u64..60_000, extra in 0u64..3_600_000) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial + Duration::from_millis(extra);
            let d = retry_delay(attempts, initial, max);
            prop_assert!(d >= initial && d <= max);
            prop_assert!(retry_delay(attempts + 1, initial, max) >= d);
        }
    }

    #[test]
    fn retry_delay_is_30s_doubling_to_15_minutes() {
        let (i, m) = (Duration::from_secs(30), Duration::from_secs(900));
        let got: Vec<u64> = (1..=7).map(|a| retry_delay(a, i, m).as_secs()).collect();
        assert_eq!(got, vec![30, 60, 120, 240, 480, 900, 900]);
    }
}
