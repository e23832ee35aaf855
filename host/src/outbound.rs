//! The host's outbound HTTP client: pooled, over rustls, with per-client TLS
//! settings.
//!
//! wasmtime-wasi-http's `default_send_request` opens a new connection for
//! every request and waits up to 600 s; connectors calling the same API many
//! times per run need keep-alive instead. Each named credential gets its own
//! client so its TLS settings (extra CAs for a private PKI, a client
//! certificate for mutual TLS) cannot leak into another credential's
//! connections; OAuth token requests go out on the credential's client, and
//! result callbacks on one of their own.
//!
//! This module owns turning [`TlsSettings`] into a rustls configuration and
//! saying, field by field, what is wrong with them; where the settings come
//! from (configuration, secret references) is the credentials' business. It
//! is a leaf, low in the tree, so the callout policy and the credentials it
//! authenticates with can both use it without importing each other.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;

use crate::secret::Secret;

/// A pooled HTTP/1.1 and HTTP/2 client over rustls.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// TLS settings of one credential.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// Extra CA certificates (PEM, one or more) trusted in addition to the
    /// public roots (for internal systems with a private CA).
    pub extra_ca_pem: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert_pem: Option<String>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1). A secret.
    pub client_key_pem: Option<Secret>,
}

/// A client certificate chain with its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Settings that passed [`TlsSettings::check`], in the form rustls takes.
struct ParsedTls {
    roots: rustls::RootCertStore,
    identity: Option<Identity>,
}

impl TlsSettings {
    /// Settings presenting this client certificate chain and key (both PEM);
    /// the key is kept as a [`Secret`] from here on.
    pub fn with_client_identity(cert_pem: String, key_pem: String) -> TlsSettings {
        TlsSettings {
            extra_ca_pem: None,
            client_cert_pem: Some(cert_pem),
            client_key_pem: Some(Secret::new(key_pem)),
        }
    }

    /// These settings, also trusting the CA certificates in `pem` (added to
    /// any extra CAs already set, so calling it twice trusts both).
    pub fn with_extra_ca(mut self, pem: String) -> Self {
        self.extra_ca_pem = Some(match self.extra_ca_pem.take() {
            Some(earlier) => format!("{earlier}\n{pem}"),
            None => pem,
        });
        self
    }

    /// Checks the PEM texts parse and that certificate and key come together
    /// and match; each problem names the field (`tls.extra_ca`,
    /// `tls.client_cert`, `tls.client_key`). The messages never quote PEM
    /// text: the key is a secret, and a pasted certificate is noise.
    pub fn check(&self) -> Result<(), Vec<String>> {
        self.parse().map(|_| ())
    }

    fn parse(&self) -> Result<ParsedTls, Vec<String>> {
        let mut problems = Vec::new();
        let roots = self.roots(&mut problems);
        let identity = self.identity(&mut problems);
        if problems.is_empty() {
            Ok(ParsedTls { roots, identity })
        } else {
            Err(problems)
        }
    }

    /// The public webpki roots plus the extra CAs.
    fn roots(&self, problems: &mut Vec<String>) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let Some(pem) = &self.extra_ca_pem else {
            return roots;
        };
        let Some(certs) = parse_certs("tls.extra_ca", pem, problems) else {
            return roots;
        };
        for (i, cert) in certs.into_iter().enumerate() {
            if roots.add(cert).is_err() {
                problems.push(format!(
                    "tls.extra_ca: certificate {} is not a valid X.509 certificate",
                    i + 1
                ));
            }
        }
        roots
    }

    /// The client certificate chain and key, when both are set, parse and match.
    fn identity(&self, problems: &mut Vec<String>) -> Option<Identity> {
        let certs = self
            .client_cert_pem
            .as_deref()
            .and_then(|pem| parse_certs("tls.client_cert", pem, problems));
        let key = self.client_key_pem.as_ref().and_then(|k| parse_key(k, problems));
        if self.client_cert_pem.is_some() != self.client_key_pem.is_some() {
            problems.push("tls: a client certificate needs its key, and a key its certificate".into());
        }
        if let Some(first) = certs.as_ref().and_then(|c| c.first())
            && ParsedCertificate::try_from(first).is_err()
        {
            problems.push("tls.client_cert: certificate 1 is not a valid X.509 certificate".into());
            return None;
        }
        let (certs, key) = (certs?, key?);
        let signing_key = provider().key_provider.load_private_key(key.clone_key()).ok();
        let Some(signing_key) = signing_key else {
            problems.push("tls.client_key: not an RSA, ECDSA or Ed25519 key that can sign".into());
            return None;
        };
        // `Unknown` (the key cannot tell its public half) is let through, as
        // rustls's own `with_client_auth_cert` does: the handshake will show it.
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            CertifiedKey::new(certs.clone(), signing_key).keys_match()
        {
            problems.push("tls.client_key does not match tls.client_cert".into());
            return None;
        }
        Some((certs, key))
    }
}

/// Every certificate in `pem`, or `None` after noting why there is none.
fn parse_certs(field: &str, pem: &str, problems: &mut Vec<String>) -> Option<Vec<CertificateDer<'static>>> {
    match CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if certs.is_empty() => {
            problems.push(format!("{field}: no certificate found in the PEM text"));
            None
        }
        Ok(certs) => Some(certs),
        Err(e) => {
            problems.push(pem_problem(field, "certificate", &e));
            None
        }
    }
}

/// The first private key in `key`, or `None` after noting why there is none.
fn parse_key(key: &Secret, problems: &mut Vec<String>) -> Option<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
        .map_err(|e| {
            problems.push(pem_problem(
                "tls.client_key",
                "private key (PKCS#8, PKCS#1 or SEC1)",
                &e,
            ))
        })
        .ok()
}

/// A PEM error in words. The parser's own messages can quote the offending
/// line, which for a key would be part of the secret, so they are not used.
fn pem_problem(field: &str, wanted: &str, e: &pem::Error) -> String {
    let why = match e {
        pem::Error::NoItemsFound => return format!("{field}: no {wanted} found in the PEM text"),
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "the text cannot be read",
    };
    format!("{field}: malformed PEM text: {why}")
}

/// The one crypto provider of the host's outbound TLS.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a client with keep-alive, a connect timeout, the webpki roots plus
/// the extra CAs, and the client identity when set. Fails with the problems
/// of [`TlsSettings::check`], joined by `; `.
pub fn build_client(connect_timeout: Duration, tls: &TlsSettings) -> Result<HttpClient, String> {
    let parsed = tls.parse().map_err(|problems| problems.join("; "))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(parsed.roots);
    let config = match parsed.identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|_| "tls.client_key: the key cannot be used with tls.client_cert".to_string())?,
        None => builder.with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(32)
        .build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that must never show up in a message.
    const MARKER: &str = "S3CRET-MARKER";

    fn garbage() -> String {
        format!("-----BEGIN PRIVATE KEY-----\n{MARKER}!!not base64\n-----END PRIVATE KEY-----\n")
    }

    fn settings(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsSettings {
        TlsSettings {
            extra_ca_pem: ca.map(str::to_string),
            client_cert_pem: cert.map(str::to_string),
            client_key_pem: key.map(|k| Secret::new(k.to_string())),
        }
    }

    #[test]
    fn default_settings_build_a_client() {
        assert!(TlsSettings::default().check().is_ok());
        assert!(build_client(Duration::from_secs(1), &TlsSettings::default()).is_ok());
    }

    #[test]
    fn text_without_pem_sections_has_no_certificate() {
        let problems = settings(Some(MARKER), None, None).check().unwrap_err();
        assert_eq!(problems, ["tls.extra_ca: no certificate found in the PEM text"]);
    }

    #[test]
    fn malformed_key_is_named_without_quoting_it() {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let problems = settings(None, Some(cert), Some(&garbage())).check().unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("tls.client_key: malformed PEM text"))
        );
        assert!(problems.iter().any(|p| p.starts_with("tls.client_cert: ")));
        assert!(problems.iter().all(|p| !p.contains(MARKER)), "{problems:?}");
        let error = build_client(Duration::from_secs(1), &settings(None, None, Some(&garbage())))
            .expect_err("a malformed key does not build");
        assert!(!error.contains(MARKER), "{error}");
    }

    #[test]
    fn key_without_certificate_is_refused() {
        let problems = settings(None, None, Some(&garbage())).check().unwrap_err();
        assert!(
            problems.contains(&"tls: a client certificate needs its key, and a key its certificate".into()),
            "{problems:?}"
        );
    }

    #[test]
    fn extra_cas_accumulate() {
        let tls = TlsSettings::default()
            .with_extra_ca("a".into())
            .with_extra_ca("b".into());
        assert_eq!(tls.extra_ca_pem.as_deref(), Some("a\nb"));
    }
}
