//! Amazon Managed Prometheus: every request signed with SigV4 (service `aps`) over the bytes
//! actually sent, against a local server that checks the signature the way AMP does
//! (docs.aws.amazon.com, "Signature Version 4 signing process": the canonical request from
//! the method, path, query, signed headers and the body's SHA-256); and credentials from the
//! environment, then from web identity through a local STS answering AssumeRoleWithWebIdentity
//! as the STS API reference documents. One test, because the credential chain reads the
//! process environment.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::post;
use axum::Router;
use rightsizer::prometheus::sigv4::{signature_headers, AwsCredentials, SigV4Config};
use rightsizer::prometheus::{PromClient, PromConfig};
use secrecy::SecretString;

#[derive(Default)]
struct Seen {
    /// (path, authorization, whether the signature matched, security token).
    requests: Vec<(String, String, bool, Option<String>)>,
    sts_forms: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

/// The secret the server knows for each access key id.
fn secret_of(access_key_id: &str) -> &'static str {
    match access_key_id {
        "AKIDENV" => "env-secret",
        "ASIASTS" => "sts-secret",
        _ => "unknown",
    }
}

async fn amp(
    State(seen): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (
    axum::http::StatusCode,
    [(&'static str, &'static str); 1],
    &'static str,
) {
    let h = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let authorization = h("authorization").unwrap_or_default();
    let key = authorization
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_string();
    let amz_date = h("x-amz-date").unwrap_or_default();
    let at = chrono::NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ")
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.and_utc().timestamp() as u64));
    let token = h("x-amz-security-token");
    let matched = at.is_ok_and(|at| {
        let host = h("host").unwrap();
        let content_type = h("content-type").unwrap();
        let expected = signature_headers(
            &SigV4Config {
                region: "eu-west-1".into(),
                service: "aps".into(),
            },
            &AwsCredentials {
                access_key_id: key.clone(),
                secret_access_key: SecretString::from(secret_of(&key).to_string()),
                session_token: token.clone().map(SecretString::from),
                expires: None,
            },
            method.as_str(),
            &format!("http://{host}{uri}"),
            &[("host", &host), ("content-type", &content_type)],
            &body,
            at,
        )
        .unwrap();
        expected
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && *v == authorization)
    });
    seen.lock()
        .unwrap()
        .requests
        .push((uri.path().to_string(), authorization, matched, token));
    if !matched {
        return (
            axum::http::StatusCode::FORBIDDEN,
            JSON,
            "{\"message\":\"The request signature we calculated does not match\"}",
        );
    }
    (
        axum::http::StatusCode::OK,
        JSON,
        "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}",
    )
}

async fn sts(State(seen): State<Shared>, body: String) -> String {
    seen.lock().unwrap().sts_forms.push(body);
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
       <AssumeRoleWithWebIdentityResult><Credentials>\
         <AccessKeyId>ASIASTS</AccessKeyId><SecretAccessKey>sts-secret</SecretAccessKey>\
         <SessionToken>session-token-1</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
       </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        .into()
}

#[tokio::test]
async fn requests_are_signed_with_credentials_from_the_environment_or_web_identity() {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/workspaces/ws-1/api/v1/query", post(amp))
        .route("/sts/", post(sts))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = || {
        PromClient::new(&PromConfig {
            url: format!("http://{addr}/workspaces/ws-1"),
            sigv4: Some(SigV4Config {
                region: "eu-west-1".into(),
                service: "aps".into(),
            }),
            retries: 0,
            ..PromConfig::default()
        })
        .unwrap()
    };
    for var in [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/rightsizer-test",
    );

    // Nothing in the chain: a clear error, no request sent.
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    let err = client()
        .query("up{job=\"a b\"}", 1_700_000_000)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no AWS credentials"), "{err}");
    assert!(seen.lock().unwrap().requests.is_empty());

    // The environment.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDENV");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "env-secret");
    client()
        .query("up{job=\"a b\"}", 1_700_000_000)
        .await
        .unwrap();

    // Web identity, exchanged at STS.
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    let token_file = std::env::temp_dir().join(format!("rs-web-identity-{}", std::process::id()));
    std::fs::write(&token_file, "eyJ.projected.token\n").unwrap();
    std::env::set_var("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file);
    std::env::set_var("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/rightsizer");
    std::env::set_var("AWS_ENDPOINT_URL_STS", format!("http://{addr}/sts"));
    let c = client();
    c.query("up", 1_700_000_000).await.unwrap();
    c.query("up", 1_700_000_060).await.unwrap();
    std::fs::remove_file(&token_file).unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.requests.len(), 3, "{:?}", seen.requests);
    for (path, authorization, matched, _) in &seen.requests {
        assert_eq!(path, "/workspaces/ws-1/api/v1/query");
        assert!(
            *matched,
            "signature does not match the bytes sent: {authorization}"
        );
        assert!(
            authorization.contains(
                "/eu-west-1/aps/aws4_request, SignedHeaders=content-type;host;x-amz-date"
            ),
            "{authorization}"
        );
    }
    assert!(seen.requests[0].1.contains("Credential=AKIDENV/"));
    assert_eq!(seen.requests[0].3, None);
    assert!(seen.requests[1].1.contains("Credential=ASIASTS/"));
    assert_eq!(seen.requests[1].3.as_deref(), Some("session-token-1"));
    assert_eq!(
        seen.sts_forms.len(),
        1,
        "STS credentials are reused until they near expiry"
    );
    let form = &seen.sts_forms[0];
    assert!(form.contains("Action=AssumeRoleWithWebIdentity"), "{form}");
    assert!(
        form.contains("WebIdentityToken=eyJ.projected.token"),
        "{form}"
    );
    assert!(
        form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Frightsizer"),
        "{form}"
    );
}
