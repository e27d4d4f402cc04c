//! Access keys of one `ProviderConfig`, kept out of every formatted string.
//!
//! The secret and the STS token live in [`SecretString`], whose `Debug` and
//! `Display` print `<redacted>`; nothing here implements `Serialize`, so
//! credentials cannot end up in status, events or logs by accident. Only the
//! signers read the secret, through [`SecretString::expose`].

use std::fmt;

use super::error::ProviderError;
use crate::sign::encode::percent_encode;

/// A string that never formats its content.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the credentials Secret holds (`accessKeyId`, `accessKeySecret`, optional `securityToken`).
///
/// The access key id is an identifier, not a secret: it is sent in clear in
/// every signed request, and `Debug` shows it so an operator can tell which key
/// a ProviderConfig uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    /// STS token (Alibaba `SecurityToken` / `x-acs-security-token`, Baidu `x-bce-security-token`).
    pub security_token: Option<SecretString>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::new(access_key_secret),
            security_token: security_token.map(SecretString::from),
        }
    }
}

impl Credentials {
    /// `text` with the secret and the token replaced by `<redacted>`, raw and
    /// percent-encoded once or twice: a server that echoes its string to sign
    /// (V2 signs `SecurityToken`) must not carry them into status or events.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        let secrets = std::iter::once(&self.access_key_secret).chain(&self.security_token);
        for secret in secrets.map(SecretString::expose).filter(|s| !s.is_empty()) {
            let once = percent_encode(secret);
            for form in [percent_encode(&once), once, secret.to_string()] {
                text = text.replace(&form, "<redacted>");
            }
        }
        text
    }

    /// `err` with [`Self::redact`] applied to everything the provider said.
    pub fn redact_error(&self, mut err: ProviderError) -> ProviderError {
        err.code = self.redact(&err.code);
        err.message = self.redact(&err.message);
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formatting credentials in any way must not reveal the secret or the token.
    #[test]
    fn debug_and_display_never_show_the_secret_or_the_token() {
        let credentials = Credentials::new("AKID-visible", "s3cr3t-XYZ", Some("tok-ABC".into()));
        let debug = format!("{credentials:?} {credentials:#?}");
        let display = format!(
            "{} {}",
            credentials.access_key_secret,
            credentials.security_token.clone().expect("token")
        );
        for text in [&debug, &display] {
            assert!(!text.contains("s3cr3t-XYZ"), "{text}");
            assert!(!text.contains("tok-ABC"), "{text}");
        }
        assert!(debug.contains("AKID-visible"));
        assert!(debug.contains("<redacted>"));
        assert_eq!(credentials.access_key_secret.expose(), "s3cr3t-XYZ");
    }

    /// A server echoing a V2 string to sign would reveal an encoded STS token.
    #[test]
    fn redaction_removes_raw_and_encoded_secrets_from_provider_text() {
        let credentials = Credentials::new("ak", "se/cret", Some("to+ken=".into()));
        let echoed = "string to sign: SecurityToken%3Dto%252Bken%253D&x=se%2Fcret&raw=to+ken=";
        let redacted = credentials.redact(echoed);
        for leak in ["to%252Bken%253D", "se%2Fcret", "to+ken="] {
            assert!(!redacted.contains(leak), "{redacted}");
        }
        assert!(redacted.starts_with("string to sign: SecurityToken%3D<redacted>"));
    }
}
