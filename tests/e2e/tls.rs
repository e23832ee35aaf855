//! Per-credential TLS settings: an extra CA for a private PKI and a client
//! certificate for mutual TLS, through the host's own outbound client against
//! a loopback HTTPS server ([`plugboard_tests::tls_server`]).

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use plugboard::outbound::{HttpClient, TlsSettings, build_client};
use plugboard_tests::tls_server::{CLIENT_CN, TestPki, TlsUpstream};
use serde_json::Value;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for `tls`; panics with the problems when it does not build.
fn client(tls: &TlsSettings) -> HttpClient {
    build_client(CONNECT_TIMEOUT, tls).unwrap_or_else(|e| panic!("client does not build: {e}"))
}

/// The identity of the PKI's own client, trusting the PKI's CA.
fn mutual(pki: &TestPki) -> TlsSettings {
    TlsSettings::with_client_identity(pki.client_cert_pem.clone(), pki.client_key_pem.clone())
        .with_extra_ca(pki.ca_pem.clone())
}

/// GETs `path`: the status and JSON body, or the client's error.
async fn get(
    client: &HttpClient,
    up: &TlsUpstream,
    path: &str,
) -> Result<(u16, Value), hyper_util::client::legacy::Error> {
    let req = http::Request::get(format!("{}{path}", up.base_url()))
        .header("x-probe", "tls")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("request finishes within 10 s")?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Ok((status, serde_json::from_slice(&body).expect("JSON body")))
}

/// The rustls error somewhere in `e`'s chain. rustls errors travel inside
/// (nested) `io::Error`s, whose `source` skips the error they wrap, so those
/// are followed through `get_ref`.
fn rustls_error(e: &hyper_util::client::legacy::Error) -> Option<rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// The server counts a failed handshake once its side of it ends, which can
/// be just after the client has seen the failure.
async fn wait_for_failed_handshake(up: &TlsUpstream) -> usize {
    for _ in 0..100 {
        if up.failed_handshakes() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    up.failed_handshakes()
}

/// With the private CA and a client identity, mutual TLS succeeds and the
/// server sees the credential's client certificate.
#[tokio::test]
async fn client_identity_reaches_a_server_requiring_it() {
    let pki = TestPki::generate();
    let up = TlsUpstream::start(&pki, true).await;
    let client = client(&mutual(&pki));
    for _ in 0..2 {
        let (status, body) = get(&client, &up, "/v1/accounts")
            .await
            .expect("mutual TLS succeeds");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["client_cn"], CLIENT_CN, "{body}");
        assert_eq!(body["path"], "/v1/accounts");
        assert_eq!(body["headers"]["x-probe"], "tls");
    }
    assert_eq!(up.failed_handshakes(), 0);
}

/// Trusting the private CA is enough for a server that does not ask for a
/// client certificate; none is presented.
#[tokio::test]
async fn extra_ca_alone_reaches_a_private_server() {
    let pki = TestPki::generate();
    let up = TlsUpstream::start(&pki, false).await;
    let client = client(&TlsSettings::default().with_extra_ca(pki.ca_pem.clone()));
    let (status, body) = get(&client, &up, "/")
        .await
        .expect("TLS with the extra CA succeeds");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_cn"], Value::Null, "{body}");
}

/// Without a client identity, a server requiring mutual TLS refuses the
/// handshake and no request gets through.
#[tokio::test]
async fn missing_client_identity_fails_the_handshake() {
    let pki = TestPki::generate();
    let up = TlsUpstream::start(&pki, true).await;
    let client = client(&TlsSettings::default().with_extra_ca(pki.ca_pem.clone()));
    let result = get(&client, &up, "/").await;
    assert!(result.is_err(), "request got through: {result:?}");
    assert!(wait_for_failed_handshake(&up).await >= 1);
}

/// A client certificate from another CA is no better than none.
#[tokio::test]
async fn foreign_client_identity_fails_the_handshake() {
    let pki = TestPki::generate();
    let up = TlsUpstream::start(&pki, true).await;
    let foreign = TlsSettings::with_client_identity(
        pki.foreign_client_cert_pem.clone(),
        pki.foreign_client_key_pem.clone(),
    )
    .with_extra_ca(pki.ca_pem.clone());
    let result = get(&client(&foreign), &up, "/").await;
    assert!(result.is_err(), "request got through: {result:?}");
    assert!(wait_for_failed_handshake(&up).await >= 1);
}

/// Without the extra CA, the public roots alone do not trust the private
/// server: the client refuses it as signed by an unknown issuer.
#[tokio::test]
async fn private_server_is_untrusted_without_the_extra_ca() {
    let pki = TestPki::generate();
    let up = TlsUpstream::start(&pki, false).await;
    let no_ca = TlsSettings::with_client_identity(pki.client_cert_pem.clone(), pki.client_key_pem.clone());
    let err = get(&client(&no_ca), &up, "/")
        .await
        .expect_err("untrusted server");
    assert_eq!(
        rustls_error(&err),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        )),
        "{err:?}"
    );
}

/// Every line of the PEM texts, so a test can tell none leaked into a message.
fn pem_lines(texts: &[&str]) -> Vec<String> {
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn assert_no_pem(problems: &[String], texts: &[&str]) {
    for p in problems {
        for line in pem_lines(texts) {
            assert!(!p.contains(&line), "message quotes PEM text: {p}");
        }
        assert!(!p.contains("-----"), "message quotes PEM text: {p}");
    }
}

/// `check` names what is wrong, field by field, and never quotes PEM text:
/// a certificate without its key, garbage, and a key of another certificate.
#[test]
fn check_names_the_problem_without_quoting_pem() {
    let pki = TestPki::generate();
    assert_eq!(mutual(&pki).check(), Ok(()));

    let mut cert_only = mutual(&pki);
    cert_only.client_key_pem = None;
    let problems = cert_only.check().unwrap_err();
    assert_eq!(
        problems,
        ["tls: a client certificate needs its key, and a key its certificate"]
    );

    let mut key_only = mutual(&pki);
    key_only.client_cert_pem = None;
    let problems = key_only.check().unwrap_err();
    assert_eq!(
        problems,
        ["tls: a client certificate needs its key, and a key its certificate"]
    );
    assert_no_pem(&problems, &[&pki.client_key_pem]);

    let garbage_key = "-----BEGIN PRIVATE KEY-----\nnot*base64*at*all\n-----END PRIVATE KEY-----\n";
    let garbage = TlsSettings::with_client_identity("just some text".into(), garbage_key.into())
        .with_extra_ca("-----BEGIN CERTIFICATE-----\nMIIBzz\n".into());
    let problems = garbage.check().unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("tls.extra_ca: malformed PEM text"),
        "{problems:?}"
    );
    assert_eq!(
        problems[1],
        "tls.client_cert: no certificate found in the PEM text"
    );
    assert!(
        problems[2].starts_with("tls.client_key: malformed PEM text"),
        "{problems:?}"
    );
    assert_no_pem(&problems, &[garbage_key, "MIIBzz"]);

    let mismatched =
        TlsSettings::with_client_identity(pki.client_cert_pem.clone(), pki.foreign_client_key_pem.clone())
            .with_extra_ca(pki.ca_pem.clone());
    let problems = mismatched.check().unwrap_err();
    assert_eq!(problems, ["tls.client_key does not match tls.client_cert"]);
    assert_no_pem(&problems, &[&pki.client_cert_pem, &pki.foreign_client_key_pem]);
    let error = build_client(CONNECT_TIMEOUT, &mismatched).expect_err("a mismatched key does not build");
    assert_eq!(error, "tls.client_key does not match tls.client_cert");
}

/// Changing a credential's custom CA changes which servers are believed to
/// be its host, so it clears the stored secrets like a new base URL: a CA
/// swapped in for another server's PKI cannot be used to send it the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_custom_ca_clears_the_secrets() {
    use crate::credentials::{
        activate, generate_key, get_credential, invoke, put_credential, rest_json, serve, with_key,
    };
    use serde_json::json;
    let (pki, other) = (TestPki::generate(), TestPki::generate());
    let up = TlsUpstream::start(&pki, false).await;
    let server = serve("", with_key(&generate_key())).await;
    let credential = |ca: &str, token: Option<&str>| {
        let mut auth = json!({"type": "bearer"});
        if let Some(t) = token {
            auth["token"] = json!(t);
        }
        json!({"base_url": up.base_url(), "allowed_plugins": ["rest-json"], "auth": auth, "tls": {"ca": ca}})
    };
    let token = "ca-bound-token-4e1f";
    let (s, v) = put_credential(&server, "private", credential(&pki.ca_pem, Some(token))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["tls"]["ca"], true, "{v}");
    activate(&server, rest_json("private-api", "private")).await;
    let (s, v) = invoke(&server, "private-api", "/orders").await;
    assert_eq!(s, 200, "{v}");

    let (s, v) = put_credential(&server, "private", credential(&other.ca_pem, None)).await;
    assert_eq!((s, &v["cleared_secrets"]), (200, &json!(["token"])), "{v}");
    assert_eq!(v["secrets"]["token"], "missing", "{v}");
    let (s, v) = invoke(&server, "private-api", "/orders").await;
    assert_ne!(s, 200, "{v}");
    assert!(v.to_string().contains("its secret `token` is not set"), "{v}");

    // The same CA again is no change: nothing more to clear.
    let (s, v) = put_credential(&server, "private", credential(&other.ca_pem, Some(token))).await;
    assert_eq!((s, &v["cleared_secrets"]), (200, &json!([])), "{v}");
    let (s, v) = put_credential(&server, "private", credential(&other.ca_pem, None)).await;
    assert_eq!((s, &v["cleared_secrets"]), (200, &json!([])), "{v}");
    let (_, view) = get_credential(&server, "private").await;
    assert_eq!(view["secrets"]["token"], "set", "{view}");
}
