//! A string that must never be printed: partner API keys, bearer tokens, JWT keys, passwords.
//!
//! `Debug` and `Display` print `***`; the value is reachable only through [`Secret::expose`], so
//! every place that uses the real value is easy to find with `grep expose`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string. Printing it in any way yields `***`; comparing two takes the same time
/// wherever they differ. (Kept over the `secrecy` crate: the configuration needs `Clone`,
/// `Default`, lenient `Deserialize` and a `***` `Serialize`, which `SecretString` does not give.)
#[derive(Clone, Default, Eq)]
pub struct Secret(String);

/// Constant time in the contents (a length difference shows).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value. Use only where the value is sent or compared, never where it is printed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Accepts numbers too: `SCIM_BRIDGE_API_KEY=12345` parses as a number.
        crate::lenient::any_string(deserializer).map(Secret)
    }
}

/// Serializes as `***`: a serialized configuration is for people to read, never to reload.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// A random 256-bit token, URL-safe base64.
pub fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(s, Secret::new("hunter2"));
        assert_ne!(s, Secret::new("hunter3"));
        assert_ne!(s, Secret::new("hunter"));
    }
}
