//! A loopback HTTPS server with its own private PKI, standing in for an
//! internal system that the host reaches with an extra CA and, for mutual
//! TLS, a client certificate.
//!
//! The PKI is made fresh by each test with rcgen; the server is rustls with
//! the ring provider, like the host, and speaks HTTP/1.1 and HTTP/2 (ALPN).
//! What the host's client sends and presents is echoed back in the response,
//! so a test can assert on it without reaching into the server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::task::{JoinHandle, JoinSet};

/// Common name of [`TestPki::client_cert_pem`].
pub const CLIENT_CN: &str = "plugboard-test-client";

/// Common name of [`TestPki::foreign_client_cert_pem`].
pub const FOREIGN_CLIENT_CN: &str = "plugboard-foreign-client";

/// A private CA with a server certificate for `localhost`/127.0.0.1 and a
/// client certificate, all PEM, plus a client certificate from another CA.
pub struct TestPki {
    /// The CA certificate: what the host's credential trusts as its extra CA.
    pub ca_pem: String,
    /// Server certificate for `localhost` and `127.0.0.1`, signed by the CA.
    pub server_cert_pem: String,
    /// The server certificate's key (PKCS#8).
    pub server_key_pem: String,
    /// Client certificate with CN [`CLIENT_CN`], signed by the CA.
    pub client_cert_pem: String,
    /// The client certificate's key (PKCS#8).
    pub client_key_pem: String,
    /// Client certificate with CN [`FOREIGN_CLIENT_CN`], signed by a
    /// different CA that the server does not trust.
    pub foreign_client_cert_pem: String,
    /// The foreign client certificate's key (PKCS#8).
    pub foreign_client_key_pem: String,
}

impl TestPki {
    /// A fresh PKI with new keys (ECDSA P-256).
    pub fn generate() -> TestPki {
        let (ca_pem, ca) = certificate_authority("Plugboard Test CA");
        let (_, foreign_ca) = certificate_authority("Plugboard Foreign CA");
        let server_names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let (server_cert_pem, server_key_pem) = leaf(
            &ca,
            "localhost",
            server_names,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert_pem, client_key_pem) =
            leaf(&ca, CLIENT_CN, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
        let (foreign_client_cert_pem, foreign_client_key_pem) = leaf(
            &foreign_ca,
            FOREIGN_CLIENT_CN,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        TestPki {
            ca_pem,
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            foreign_client_cert_pem,
            foreign_client_key_pem,
        }
    }
}

/// A self-signed CA: its PEM and the issuer that signs with it.
fn certificate_authority(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("generate CA key");
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign CA");
    (cert.pem(), Issuer::new(params, key))
}

/// An end-entity certificate signed by `issuer`: certificate and key PEM.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("generate key");
    let mut params = CertificateParams::new(names).expect("valid subject names");
    params.distinguished_name = distinguished_name(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("sign certificate");
    (cert.pem(), key.serialize_pem())
}

fn distinguished_name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

/// An HTTPS server on 127.0.0.1 that answers every request with 200 and a
/// JSON body `{"path", "method", "client_cn", "headers"}`: `client_cn` is the
/// CN of the client certificate presented (or null), `headers` has lowercase
/// names. It stops, connections included, when dropped.
pub struct TlsUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    failed_handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsUpstream {
    /// Starts a server with the PKI's server certificate. It asks every
    /// client for a certificate signed by the PKI's CA and refuses one signed
    /// by anyone else; with `require_client_cert`, the handshake also fails
    /// when the client presents none.
    pub async fn start(pki: &TestPki, require_client_cert: bool) -> TlsUpstream {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(pki, require_client_cert)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let failed_handshakes = Arc::new(AtomicUsize::new(0));
        let failed = failed_handshakes.clone();
        let task = tokio::spawn(async move {
            // Connections live in the accept task's JoinSet, so aborting that
            // task on drop aborts them too.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                let (acceptor, failed) = (acceptor.clone(), failed.clone());
                connections.spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(tls) => serve(tls).await,
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        TlsUpstream {
            addr,
            failed_handshakes,
            task,
        }
    }

    /// `https://localhost:PORT` (the server certificate is for localhost).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// How many TLS handshakes failed (no client certificate, an untrusted
    /// one, or a client that refused the server's certificate).
    pub fn failed_handshakes(&self) -> usize {
        self.failed_handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn server_config(pki: &TestPki, require_client_cert: bool) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA PEM"))
        .expect("CA certificate");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = if require_client_cert {
        verifier.build()
    } else {
        verifier.allow_unauthenticated().build()
    }
    .expect("client verifier");
    let chain = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).expect("server key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Serves one TLS connection, HTTP/1.1 or HTTP/2 as negotiated.
async fn serve(tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
    let client_cn = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| subject_cn(cert));
    let service = hyper::service::service_fn(move |req| {
        let client_cn = client_cn.clone();
        async move { Ok::<_, Infallible>(echo(&req, client_cn)) }
    });
    let io = hyper_util::rt::TokioIo::new(tls);
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

fn echo(req: &Request<Incoming>, client_cn: Option<String>) -> Response<Full<Bytes>> {
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = serde_json::json!({
        "path": req.uri().path(),
        "method": req.method().as_str(),
        "client_cn": client_cn,
        "headers": headers,
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

/// The subject's common name in a DER certificate. The tests crate has no
/// X.509 parser, and walking to the subject is short:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity, subject, ... }, ... }`.
fn subject_cn(der: &[u8]) -> Option<String> {
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    let (certificate, _) = expect_tag(der, 0x30)?;
    let (mut tbs, _) = expect_tag(certificate, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in ["serialNumber", "signature", "issuer", "validity"] {
        tbs = tlv(tbs)?.2;
    }
    let (mut subject, _) = expect_tag(tbs, 0x30)?;
    while !subject.is_empty() {
        let (mut rdn, rest) = expect_tag(subject, 0x31)?;
        subject = rest;
        while !rdn.is_empty() {
            let (attribute, rest) = expect_tag(rdn, 0x30)?;
            rdn = rest;
            let (oid, value) = expect_tag(attribute, 0x06)?;
            if oid == COMMON_NAME {
                return String::from_utf8(tlv(value)?.1.to_vec()).ok();
            }
        }
    }
    None
}

/// One DER element: tag, contents, and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (bytes.iter().fold(0, |len, b| len << 8 | usize::from(*b)), rest)
    };
    (rest.len() >= len).then(|| {
        let (contents, rest) = rest.split_at(len);
        (tag, contents, rest)
    })
}

/// One DER element with this tag: contents and what follows it.
fn expect_tag(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = tlv(input)?;
    (found == tag).then_some((contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The echoed `client_cn` comes from this parser: it must find the
    /// subject's CN, not the issuer's.
    #[test]
    fn subject_cn_reads_the_subject_not_the_issuer() {
        let pki = TestPki::generate();
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM");
        assert_eq!(subject_cn(&der(&pki.client_cert_pem)).as_deref(), Some(CLIENT_CN));
        assert_eq!(
            subject_cn(&der(&pki.foreign_client_cert_pem)).as_deref(),
            Some(FOREIGN_CLIENT_CN)
        );
        assert_eq!(
            subject_cn(&der(&pki.ca_pem)).as_deref(),
            Some("Plugboard Test CA")
        );
        assert_eq!(subject_cn(b"\x30\x03\x02\x01"), None);
    }
}
