//! The admin bearer token: parsed once, kept only as a digest, compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The fewest characters a token may have: a guessable token on an API that can delete triggers is worse
/// than a refusal to start.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Nothing but whitespace: an unset variable or an empty file.
    #[error("the admin token is empty")]
    Empty,
    /// Too short to resist guessing.
    #[error(
        "the admin token has {found} characters; at least {MIN_TOKEN_LEN} are required (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// How many characters it had.
        found: usize,
    },
    /// A character that cannot travel in an `Authorization` header.
    #[error("the admin token contains a character other than visible ASCII at position {position}")]
    BadCharacter {
        /// Where (0-based, after trimming), so the operator finds it without the token being printed.
        position: usize,
    },
}

/// The token the admin API requires. Only its SHA-256 digest is kept, so the token cannot leak through
/// `Debug`, logs or a memory dump of the daemon, and comparing digests takes the same time whatever the
/// length of what a client presents.
#[derive(Clone)]
pub struct AdminToken {
    /// SHA-256 of the token.
    digest: [u8; 32],
}

impl AdminToken {
    /// Parses a token as read from an environment variable or a file: surrounding whitespace (a file's final
    /// newline) is dropped; what remains must be at least [`MIN_TOKEN_LEN`] visible ASCII characters.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if let Some(position) = token.bytes().position(|byte| !byte.is_ascii_graphic()) {
            return Err(TokenError::BadCharacter { position });
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { found: token.len() });
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token, in time independent of where (or whether) they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// What an `Authorization` header value presents, if it is a bearer credential (scheme case-insensitive,
/// RFC 6750 section 2.1).
pub fn bearer_credential(header: &[u8]) -> Option<&[u8]> {
    let scheme = b"bearer ";
    if header.len() <= scheme.len() || !header[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return None;
    }
    let credential = header[scheme.len()..].trim_ascii();
    (!credential.is_empty()).then_some(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_a_files_newline_and_refuses_weak_tokens() {
        let token = AdminToken::parse("0123456789abcdef\n").unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        assert_eq!(AdminToken::parse(" \n").unwrap_err(), TokenError::Empty);
        assert_eq!(
            AdminToken::parse("short").unwrap_err(),
            TokenError::TooShort { found: 5 }
        );
        assert_eq!(
            AdminToken::parse("0123456789 abcdef").unwrap_err(),
            TokenError::BadCharacter { position: 10 }
        );
        assert!(AdminToken::parse("0123456789abcdéf").is_err());
    }

    #[test]
    fn matches_only_the_exact_token() {
        let token = AdminToken::parse("s3cret-s3cret-s3cret").unwrap();
        assert!(token.matches(b"s3cret-s3cret-s3cret"));
        assert!(!token.matches(b"s3cret-s3cret-s3cre"));
        assert!(!token.matches(b"s3cret-s3cret-s3cret "));
        assert!(!token.matches(b""));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = AdminToken::parse("s3cret-s3cret-s3cret").unwrap();
        assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn bearer_credential_accepts_any_scheme_case_and_nothing_else() {
        assert_eq!(bearer_credential(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_credential(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_credential(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_credential(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
        assert_eq!(bearer_credential(b"Bearer "), None);
        assert_eq!(bearer_credential(b"Bearer"), None);
        assert_eq!(bearer_credential(b"Bearerabc"), None);
    }
}
