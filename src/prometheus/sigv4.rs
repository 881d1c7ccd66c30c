//! Amazon Managed Prometheus: every request signed with AWS Signature Version 4 (service
//! `aps`), with credentials from the usual chain: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, as EKS IAM roles for service accounts
//! set them, exchanged at STS), then the shared credentials file (`AWS_PROFILE`, default
//! `default`, in `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`). Not in the chain:
//! EKS Pod Identity's container credentials endpoint, the EC2 instance metadata service,
//! SSO profiles and `credential_process`.
//!
//! The signature itself is aws-sigv4's, AWS's own implementation; this module only chooses
//! the credentials and hands the request over. Web-identity credentials are kept until five
//! minutes before they expire.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use secrecy::{ExposeSecret, SecretString};

/// How to sign: the region and the service name (`aps` for Amazon Managed Prometheus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Config {
    /// AWS region of the workspace, e.g. `eu-west-1`.
    pub region: String,
    /// Signing name; `aps` for Amazon Managed Prometheus.
    pub service: String,
}

/// A set of AWS credentials.
#[derive(Clone)]
pub struct AwsCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretString,
    /// Session token of temporary credentials.
    pub session_token: Option<SecretString>,
    /// When temporary credentials expire.
    pub expires: Option<SystemTime>,
}

/// Why no signature could be made.
#[derive(Debug, thiserror::Error)]
pub enum SigV4Error {
    /// No source in the chain had credentials.
    #[error("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or a profile in the shared credentials file")]
    NoCredentials,
    /// A source was there but unusable.
    #[error("AWS credentials from {source_name}: {reason}")]
    Source {
        /// Which source.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The signer refused the request.
    #[error("cannot sign the request: {0}")]
    Sign(String),
}

/// The headers `sign` adds to a request: `authorization`, `x-amz-date` and, for temporary
/// credentials, `x-amz-security-token`.
pub fn signature_headers(
    config: &SigV4Config,
    credentials: &AwsCredentials,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    at: SystemTime,
) -> Result<Vec<(String, String)>, SigV4Error> {
    let identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose_secret().to_string(),
        credentials
            .session_token
            .as_ref()
            .map(|t| t.expose_secret().to_string()),
        credentials.expires,
        "rightsizer",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&config.region)
        .name(&config.service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SigV4Error::Sign(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SigV4Error::Sign(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| SigV4Error::Sign(e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Where credentials come from, resolved on first use and again when temporary ones near
/// their expiry.
pub struct CredentialChain {
    cached: Mutex<Option<AwsCredentials>>,
    http: reqwest::Client,
}

impl Default for CredentialChain {
    fn default() -> Self {
        CredentialChain {
            cached: Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client with a timeout always builds"),
        }
    }
}

/// Temporary credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

impl CredentialChain {
    /// Credentials to sign with now.
    pub async fn credentials(&self) -> Result<AwsCredentials, SigV4Error> {
        if let Some(c) = self
            .cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            let fresh = c
                .expires
                .is_none_or(|t| t > SystemTime::now() + RENEW_BEFORE);
            if fresh {
                return Ok(c);
            }
        }
        let c = self.resolve().await?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    async fn resolve(&self) -> Result<AwsCredentials, SigV4Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            return Ok(AwsCredentials {
                access_key_id: id,
                secret_access_key: SecretString::from(secret),
                session_token: var("AWS_SESSION_TOKEN").map(SecretString::from),
                expires: None,
            });
        }
        if let (Some(file), Some(role)) = (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN"))
        {
            return self.web_identity(&file, &role).await;
        }
        let path = var("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
        if let Some(path) = path.filter(|p| p.exists()) {
            let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
            return profile_credentials(&path, &profile);
        }
        Err(SigV4Error::NoCredentials)
    }

    /// AssumeRoleWithWebIdentity at STS (regional endpoint, or `AWS_ENDPOINT_URL_STS`): an
    /// unsigned call whose XML answer holds temporary credentials.
    async fn web_identity(
        &self,
        token_file: &str,
        role: &str,
    ) -> Result<AwsCredentials, SigV4Error> {
        let failed = |reason: String| SigV4Error::Source {
            source_name: "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)".into(),
            reason,
        };
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| failed(format!("cannot read {token_file}: {e}")))?;
        let region = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        let endpoint = std::env::var("AWS_ENDPOINT_URL_STS")
            .unwrap_or_else(|_| format!("https://sts.{region}.amazonaws.com"));
        let session =
            std::env::var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|_| "rightsizer".into());
        let resp = self
            .http
            .post(format!("{}/", endpoint.trim_end_matches('/')))
            .form(&[
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", role),
                ("RoleSessionName", session.as_str()),
                ("WebIdentityToken", token.trim()),
            ])
            .send()
            .await
            .map_err(|e| failed(format!("STS: {}", e.without_url())))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| failed(format!("STS: {}", e.without_url())))?;
        if !status.is_success() {
            let message = xml_value(&text, "Message").unwrap_or_else(|| format!("HTTP {status}"));
            return Err(failed(format!(
                "STS refused AssumeRoleWithWebIdentity: {message}"
            )));
        }
        let field = |name: &str| {
            xml_value(&text, name).ok_or_else(|| failed(format!("STS answer has no <{name}>")))
        };
        let expires = field("Expiration")?;
        let expires = chrono::DateTime::parse_from_rfc3339(&expires)
            .map_err(|e| failed(format!("STS Expiration {expires:?}: {e}")))?;
        Ok(AwsCredentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: SecretString::from(field("SecretAccessKey")?),
            session_token: Some(SecretString::from(field("SessionToken")?)),
            expires: Some(
                SystemTime::UNIX_EPOCH + Duration::from_secs(expires.timestamp().max(0) as u64),
            ),
        })
    }
}

/// The text of the first `<name>…</name>` in `xml` (STS answers are flat and unescaped
/// where it matters: keys, tokens and timestamps hold no markup).
fn xml_value(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].trim().to_string())
}

/// `[profile]` of an INI-style shared credentials file.
fn profile_credentials(
    path: &std::path::Path,
    profile: &str,
) -> Result<AwsCredentials, SigV4Error> {
    let failed = |reason: String| SigV4Error::Source {
        source_name: format!("profile {profile} in {}", path.display()),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(AwsCredentials {
            access_key_id: id,
            secret_access_key: SecretString::from(secret),
            session_token: token.map(SecretString::from),
            expires: None,
        }),
        _ => Err(failed(
            "no aws_access_key_id and aws_secret_access_key in that profile".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS Signature Version 4 test suite's credentials and time (docs.aws.amazon.com,
    /// "Signature Version 4 test suite"): get-vanilla and post-vanilla.
    #[test]
    fn reproduces_the_published_test_vectors() {
        let suite = SigV4Config {
            region: "us-east-1".into(),
            service: "service".into(),
        };
        let credentials = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::from(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
            ),
            session_token: None,
            expires: None,
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 20150830T123600Z
        for (method, signature) in [
            (
                "GET",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ] {
            let headers = signature_headers(
                &suite,
                &credentials,
                method,
                "https://example.amazonaws.com/",
                &[("host", "example.amazonaws.com")],
                b"",
                at,
            )
            .unwrap();
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
            assert_eq!(
                get("authorization").unwrap(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"
                ),
                "{method}"
            );
        }
    }

    #[test]
    fn profiles_are_read_from_the_shared_credentials_file() {
        let path = std::env::temp_dir().join(format!("rs-aws-credentials-{}", std::process::id()));
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n[ops]\naws_access_key_id=AKIDOPS\naws_secret_access_key=s2\naws_session_token=t2\n",
        )
        .unwrap();
        let ops = profile_credentials(&path, "ops").unwrap();
        assert_eq!(ops.access_key_id, "AKIDOPS");
        assert_eq!(ops.session_token.unwrap().expose_secret(), "t2");
        assert_eq!(
            profile_credentials(&path, "default").unwrap().access_key_id,
            "AKIDDEFAULT"
        );
        let err = profile_credentials(&path, "missing")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("profile missing"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
