//! Credentials for the connectors. Each system's credentials are one JSON object (the same shape
//! in AWS Secrets Manager, in a local file, or in an environment variable), read once and held
//! for the life of the process. A [`Secret`] never prints: its `Debug` and `Display` are
//! `[redacted]`, so credentials cannot reach a log by accident.

use std::fmt;

use patchflow_core::ports::PortError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A secret value: readable with [`Secret::expose`], never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// ConnectWise Automate: an integrator or API user, and the ConnectWise developer client id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutomateCredentials {
    /// The user name.
    pub username: String,
    /// Its password.
    pub password: Secret,
    /// The developer client id (the `ClientId` header).
    pub client_id: String,
    /// A two-factor passcode, for users that require one.
    #[serde(default)]
    pub two_factor_passcode: Option<Secret>,
}

/// ConnectWise PSA (Manage): an API member's keys and the developer client id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManageCredentials {
    /// The company id used to log in.
    pub company: String,
    /// The API member's public key.
    pub public_key: String,
    /// Its private key.
    pub private_key: Secret,
    /// The developer client id (the `clientId` header).
    pub client_id: String,
}

/// PagerDuty Events API v2: the integration's routing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyCredentials {
    /// The 32-character integration (routing) key.
    pub routing_key: Secret,
}

/// Parses one system's credentials from the JSON text of `source` (a secret's ARN, a file, an
/// environment variable). The error names the source and the field, never a value.
pub fn parse_credentials<T: DeserializeOwned>(source: &str, text: &str) -> Result<T, PortError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // serde quotes the value it could not read ("invalid type: integer `42`"): keep only
        // what names fields (missing, unknown), never a value.
        let inner = e.into_inner();
        let message = inner.to_string();
        let message = message.split(" at line").next().unwrap_or_default();
        let kind = if inner.is_syntax() || inner.is_eof() {
            "is not a JSON object".to_owned()
        } else if message.starts_with("missing field") || message.starts_with("unknown field") {
            message.to_owned()
        } else {
            "has a value of the wrong type or form".to_owned()
        };
        let field = if path == "." {
            String::new()
        } else {
            format!(" field `{path}`")
        };
        PortError::permanent(
            format!("credentials {source}"),
            format!("credentials{field} {kind}"),
        )
    })
}

/// Reads credentials from a local JSON file.
pub fn credentials_from_file<T: DeserializeOwned>(path: &str) -> Result<T, PortError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PortError::permanent(format!("credentials {path}"), e))?;
    parse_credentials(path, &text)
}

/// Reads credentials from the environment variable `name`, which holds the JSON object.
pub fn credentials_from_env<T: DeserializeOwned>(name: &str) -> Result<T, PortError> {
    let text = std::env::var(name).map_err(|_| {
        PortError::permanent(
            format!("credentials ${name}"),
            format!("environment variable {name} is not set"),
        )
    })?;
    parse_credentials(&format!("${name}"), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c: ManageCredentials = parse_credentials(
            "test",
            r#"{"company":"msp","public_key":"pub","private_key":"hunter2","client_id":"cid"}"#,
        )
        .unwrap();
        let shown = format!("{c:?} {}", c.private_key);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(c.private_key.expose(), "hunter2");
        assert_eq!(
            serde_json::to_string(&c.private_key).unwrap(),
            "\"[redacted]\""
        );
    }

    #[test]
    fn bad_credentials_name_the_source_and_field_but_not_the_value() {
        let e = parse_credentials::<AutomateCredentials>(
            "arn:aws:secretsmanager:us-east-1:1:secret:rmm",
            r#"{"username":"api","password":42,"client_id":"c"}"#,
        )
        .unwrap_err();
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            text.contains("secret:rmm") && text.contains("`password`"),
            "{text}"
        );
        assert!(!text.contains("42"), "{text}");
        let e = parse_credentials::<AutomateCredentials>(
            "f",
            r#"{"username":"api","password":"pw","client_id":"c","two_factor_passcode":123456}"#,
        )
        .unwrap_err();
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            text.contains("two_factor_passcode") && !text.contains("123456"),
            "{text}"
        );
        let e =
            parse_credentials::<PagerDutyCredentials>("f", r#"{"routing":"s3cr3t"}"#).unwrap_err();
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            text.contains("routing") && !text.contains("s3cr3t"),
            "{text}"
        );
        let e = parse_credentials::<PagerDutyCredentials>("f", "s3cr3t").unwrap_err();
        let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
        assert!(
            text.contains("not a JSON object") && !text.contains("s3cr3t"),
            "{text}"
        );
    }

    #[test]
    fn credentials_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pd.json");
        std::fs::write(&p, r#"{"routing_key":"R0UT1NG"}"#).unwrap();
        let c: PagerDutyCredentials = credentials_from_file(p.to_str().unwrap()).unwrap();
        assert_eq!(c.routing_key.expose(), "R0UT1NG");
        let e = credentials_from_file::<PagerDutyCredentials>("/nonexistent/pd.json").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/pd.json"), "{e}");
    }
}
