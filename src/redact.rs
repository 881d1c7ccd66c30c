//! The one way a URL is made safe to print. Every URL that reaches an error, a log line,
//! `/readyz`, a metric label, a report or the terminal goes through [`url`] (or [`text`]
//! for free text that may contain URLs), so a password given in a URL, or a signed query
//! string, is never repeated back.

/// What replaces a secret.
pub const MASK: &str = "***";

/// A URL that may carry credentials (`postgres://app:PASSWORD@db/rs`,
/// `https://user:PASSWORD@prometheus`): `Debug` and `Display` show it through [`url`],
/// so deriving `Debug` on a struct holding one can't leak them. [`SecretUrl::expose`]
/// gives the real thing to whatever connects.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL as given, credentials included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretUrl {
    fn from(s: String) -> Self {
        SecretUrl(s)
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        SecretUrl(s.to_string())
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", url(&self.0))
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&url(&self.0))
    }
}

/// Whether a query parameter's name says its value is a credential.
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    const EXACT: &[&str] = &[
        "sig",
        "signature",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "pass",
        "pwd",
        "code",
    ];
    const PARTS: &[&str] = &["password", "passwd", "token", "secret", "sslkey"];
    EXACT.contains(&name.as_str())
        || PARTS.iter().any(|p| name.contains(p))
        || name.starts_with("x-amz-")
        || name.starts_with("x-goog-")
}

/// `raw` with any `user:password@` replaced by `***@` and the values of secret-looking
/// query parameters (`password`, `token`, `access_token`, `api_key`, `secret`, `sig`,
/// `X-Amz-*`, …) replaced by `***`. Text that is not a URL comes back with anything that
/// looks like userinfo masked.
pub fn url(raw: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(raw) else {
        return mask_userinfo(raw);
    };
    let mut changed = false;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Both parts go: a user name can itself be a token (`https://TOKEN@host`).
        let masked = parsed.set_password(None).is_ok() && parsed.set_username(MASK).is_ok();
        if !masked {
            return mask_userinfo(raw);
        }
        changed = true;
    }
    if let Some(query) = parsed.query() {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.iter().any(|(k, _)| is_secret_param(k)) {
            let mut out = parsed.query_pairs_mut();
            out.clear();
            for (k, v) in &pairs {
                out.append_pair(k, if is_secret_param(k) { MASK } else { v });
            }
            drop(out);
            changed = true;
        }
    }
    if !changed {
        return raw.to_string();
    }
    let mut out = parsed.to_string();
    // The parser writes an empty path as `/`; keep `http://host` as given, so a path
    // appended to the printed base reads right.
    if parsed.path() == "/"
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && !raw.ends_with('/')
    {
        out.pop();
    }
    out
}

/// Free text (an error message, git's stderr) with every URL in it passed through [`url`].
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |j| j + 1);
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || "'\"<>()`,".contains(c))
            .map_or(rest.len(), |j| i + j);
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Masks what sits between `://` and the last `@` before the path, when the URL parser
/// refused the text.
fn mask_userinfo(raw: &str) -> String {
    let Some(i) = raw.find("://") else {
        return raw.to_string();
    };
    let authority_end = raw[i + 3..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |j| i + 3 + j);
    match raw[i + 3..authority_end].rfind('@') {
        Some(at) => format!("{}{MASK}{}", &raw[..i + 3], &raw[i + 3 + at..]),
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_goes() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/rs"),
            "postgres://***@db:5432/rs"
        );
        assert_eq!(
            url("https://ghp_abc@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(url("http://u:p%40ss@h/x"), "http://***@h/x");
        assert_eq!(url("http://u:p@h:9090"), "http://***@h:9090");
        assert_eq!(url("http://u:p@h:9090/"), "http://***@h:9090/");
    }

    #[test]
    fn secret_query_parameters_go_and_others_stay() {
        assert_eq!(
            url("postgres://db/rs?user=app&password=s3cret&sslmode=require"),
            "postgres://db/rs?user=app&password=***&sslmode=require"
        );
        let signed =
            url("https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&X-Amz-Credential=def&v=1");
        assert!(
            !signed.contains("abc") && !signed.contains("def"),
            "{signed}"
        );
        assert!(signed.ends_with("&v=1"), "{signed}");
        for name in [
            "token",
            "access_token",
            "api_key",
            "secret",
            "sig",
            "client_secret",
        ] {
            let out = url(&format!("http://h/?{name}=hunter2"));
            assert!(!out.contains("hunter2"), "{name}: {out}");
        }
    }

    #[test]
    fn harmless_urls_are_unchanged() {
        for u in [
            "sqlite://rightsizer.db",
            "sqlite::memory:",
            "http://127.0.0.1:9090",
            "http://h:9090/prefix/",
            "https://h/?step=60&query=up",
        ] {
            assert_eq!(url(u), u);
        }
    }

    #[test]
    fn secret_urls_print_redacted() {
        let u = SecretUrl::from("postgres://app:hunter2@db/rs?password=hunter3");
        assert_eq!(u.to_string(), "postgres://***@db/rs?password=***");
        assert_eq!(format!("{u:?}"), "\"postgres://***@db/rs?password=***\"");
        assert!(u.expose().contains("hunter2"));
    }

    #[test]
    fn unparseable_urls_and_free_text_are_masked() {
        assert_eq!(url("http://u:p@[bad/x"), "http://***@[bad/x");
        assert_eq!(url("not a url"), "not a url");
        assert_eq!(
            text(
                "fatal: unable to access 'https://x-access-token:ghp_abc@github.com/o/r.git/': 403"
            ),
            "fatal: unable to access 'https://***@github.com/o/r.git/': 403"
        );
        assert_eq!(
            text("error sending request for url (http://h/api?token=t0k): refused"),
            "error sending request for url (http://h/api?token=***): refused"
        );
        assert_eq!(text("no urls here"), "no urls here");
    }
}
