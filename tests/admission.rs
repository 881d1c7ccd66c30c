//! The sizing admission webhook over real TLS: AdmissionReview v1 fixtures in
//! tests/fixtures/admission (shaped as the API server sends them: "Dynamic Admission Control",
//! kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/) answered
//! with JSON Patches that the json-patch crate applies cleanly; malformed reviews answered
//! `allowed: true` with a warning; the certificate re-read when its files change; and `serve`
//! refusing a webhook without TLS.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rightsizer::http::admission::{self, AdmissionState};
use rightsizer::model::{Confidence, Recommendation, Severity};
use rightsizer::testing::{proposal, resources};
use serde_json::Value;
use support::prometheus::TempDir;

const MI: i64 = 1 << 20;

fn recommendations() -> Vec<Recommendation> {
    let mut web = proposal("web", Severity::Info, 1.0);
    web.recommended = resources(250, 512 * MI);
    let mut envoy = proposal("web", Severity::Info, 1.0);
    envoy.key.container = "envoy".into();
    envoy.recommended = resources(50, 64 * MI);
    let mut nightly = proposal("nightly", Severity::Info, 1.0);
    nightly.key.kind = "CronJob".into();
    nightly.recommended = resources(100, 128 * MI);
    vec![web, envoy, nightly]
}

/// A CA and a certificate for 127.0.0.1 it signed, as PEM: `(ca, cert, key)`.
fn certificate(name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        // Each request its own TLS handshake: the reload test asks which certificate is served.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/admission")
            .join(name),
    )
    .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Value {
    let resp = client
        .post(format!("{url}{}", admission::PATH))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The request's pod with the answer's patch applied, as the API server would.
fn patched(request: &[u8], answer: &Value) -> Value {
    let review: Value = serde_json::from_slice(request).unwrap();
    let mut pod = review["request"]["object"].clone();
    let r = &answer["response"];
    assert_eq!(r["uid"], review["request"]["uid"]);
    assert_eq!(r["allowed"], true);
    if let Some(b64) = r["patch"].as_str() {
        assert_eq!(r["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut pod, &patch).unwrap();
    }
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reviews_over_tls_and_reloads_a_renewed_certificate() {
    let dir = TempDir::new("rs-admission").unwrap();
    let db = format!("sqlite://{}", dir.path().join("rs.db").display());
    let store = rightsizer::store::connect(&db).await.unwrap();
    store
        .replace_recommendations("prod", &recommendations())
        .await
        .unwrap();
    let (ca1, cert1, key1) = certificate("first");
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, &cert1).unwrap();
    std::fs::write(&key_path, &key1).unwrap();

    let state = AdmissionState::new(Arc::clone(&store), "prod".into(), Confidence::Medium);
    assert_eq!(state.refresh().await.unwrap(), 2, "web and nightly");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(admission::serve_tls(
        listener,
        state,
        (cert_path.clone(), key_path.clone()),
        Duration::from_millis(100),
        stop_rx,
    ));
    let first = client(&ca1);

    // A Deployment's pod: both containers sized; ephemeral storage kept; the annotation says so.
    let body = fixture("deployment-pod.json");
    let pod = patched(&body, &post(&first, &url, body.clone()).await);
    let app = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(app["requests"]["cpu"], "250m");
    assert_eq!(app["requests"]["memory"], "512Mi");
    assert_eq!(app["requests"]["ephemeral-storage"], "1Gi");
    assert_eq!(app["limits"]["cpu"], "1");
    assert_eq!(app["limits"]["memory"], "512Mi");
    assert_eq!(
        pod["spec"]["containers"][1]["resources"]["requests"]["cpu"],
        "50m"
    );
    assert_eq!(
        pod["metadata"]["annotations"][admission::SIZED_ANNOTATION],
        "app,envoy"
    );

    // A CronJob's Job's pod (no resources at all; existing annotations kept).
    let body = fixture("cronjob-pod.json");
    let pod = patched(&body, &post(&first, &url, body.clone()).await);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "128Mi"
    );
    assert_eq!(pod["metadata"]["annotations"]["team"], "data");

    // Opted out: admitted unchanged, no warning.
    let body = fixture("opted-out-pod.json");
    let answer = post(&first, &url, body.clone()).await;
    assert!(answer["response"].get("patch").is_none());
    assert!(answer["response"].get("warnings").is_none());

    // Malformed: admitted unchanged, with a warning saying why; never an error status.
    for (name, uid, says) in [
        ("truncated.json", "", "is not JSON"),
        ("bad-pod.json", "bad-1", "does not decode"),
    ] {
        let answer = post(&first, &url, fixture(name)).await;
        let r = &answer["response"];
        assert_eq!(
            (r["uid"].as_str().unwrap(), r["allowed"].as_bool()),
            (uid, Some(true))
        );
        assert!(r.get("patch").is_none());
        assert!(r["warnings"][0].as_str().unwrap().contains(says), "{r}");
    }

    // cert-manager renews the Secret: a certificate from another CA is served within moments.
    let (ca2, cert2, key2) = certificate("second");
    let second = client(&ca2);
    let health = |c: &reqwest::Client| {
        let req = c.get(format!("{url}/healthz")).send();
        async move { req.await.is_ok() }
    };
    assert!(health(&first).await && !health(&second).await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&key_path, &key2).unwrap();
    std::fs::write(&cert_path, &cert2).unwrap();
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if health(&second).await {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the renewed certificate is served");
    assert!(!health(&first).await, "the old one is not");

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("stops on request")
        .unwrap()
        .unwrap();
}

#[test]
fn serve_refuses_a_webhook_without_tls_or_with_a_bad_certificate() {
    let dir = TempDir::new("rs-admission-cli").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rightsizer"))
            .env(
                "RIGHTSIZER_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("rs.db").display()),
            )
            .env_remove("RIGHTSIZER_PROMETHEUS_URL")
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--collect-interval",
                "0",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--webhook-listen", "127.0.0.1:0"]);
    assert!(
        err.contains("--webhook-listen needs --webhook-tls-cert and --webhook-tls-key"),
        "{err}"
    );
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let junk = junk.to_str().unwrap();
    let err = run(&[
        "--webhook-listen",
        "127.0.0.1:0",
        "--webhook-tls-cert",
        junk,
        "--webhook-tls-key",
        junk,
    ]);
    assert!(
        err.contains("webhook certificate") && err.contains("junk.pem"),
        "{err}"
    );
}
