//! The `[smtp]` section: where alert emails go and how they get there.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub server: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub security: SmtpSecurity,
    pub from: String,
    pub to: Vec<String>,
}

pub(crate) fn default_smtp_port() -> u16 {
    587
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    #[default]
    Starttls,
    Tls,
}

impl SmtpConfig {
    /// Problems as `(section, key, message)`, located in the file by `config`.
    pub fn validate(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut issues = Vec::new();
        if self.server.trim().is_empty() {
            issues.push(("smtp", "server", "must not be empty".to_owned()));
        }
        if !is_plausible_address(&self.from) {
            issues.push((
                "smtp",
                "from",
                format!("{:?} is not an email address", self.from),
            ));
        }
        if self.to.is_empty() {
            issues.push(("smtp", "to", "needs at least one recipient".to_owned()));
        }
        for to in &self.to {
            if !is_plausible_address(to) {
                issues.push(("smtp", "to", format!("{to:?} is not an email address")));
            }
        }
        issues
    }
}

/// `local@domain` without spaces or angle brackets; the server has the final word.
pub fn is_plausible_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>')
}
