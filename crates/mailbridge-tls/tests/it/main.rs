//! Pinning and the causes of refused certificates, against a tokio-rustls server that
//! presents what on-premises servers present: `openssl req -x509`'s default (a
//! self-signed CA:TRUE certificate), a private CA's certificate, a certificate for
//! another name. Also the silent greeting of an implicit-TLS port.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use mailbridge_tls::{Failure, MailStream, Pin, Problem, TlsSettings};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

/// A certificate and its key.
struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pem: String,
}

/// What `openssl req -x509 -subj /CN=<name>` makes: self-signed, CA:TRUE.
fn openssl_default(name: &str) -> Cert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Cert {
        der: cert.der().clone(),
        pem: cert.pem(),
        key: key.serialize_der(),
    }
}

/// A private CA and a server certificate it issued for `name`.
fn private_ca(name: &str) -> (Cert, Cert) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Contoso Root CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap();
    let ca = Cert {
        der: issuer.der().clone(),
        pem: issuer.pem(),
        key: Vec::new(),
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let server = Cert {
        der: cert.der().clone(),
        pem: cert.pem(),
        key: key.serialize_der(),
    };
    (ca, server)
}

/// A TLS server on 127.0.0.1 presenting `cert` that greets with `* OK ready`.
async fn serve(cert: &Cert) -> std::net::SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der.clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"* OK ready\r\n").await;
                    let _ = tls.flush().await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            });
        }
    });
    addr
}

async fn connect(
    settings: &TlsSettings,
    host: &str,
    addr: std::net::SocketAddr,
) -> Result<Vec<u8>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = MailStream::implicit(settings, host, tcp, Duration::from_secs(10))
        .await
        .map_err(|e| e.source)?;
    Ok(stream
        .read_line(1000, Duration::from_secs(10))
        .await
        .unwrap())
}

fn problem(e: &std::io::Error) -> Problem {
    match mailbridge_tls::failure(e) {
        Failure::Certificate(c) => c.problem(),
        other => panic!("not a certificate failure: {other:?} ({e})"),
    }
}

#[tokio::test]
async fn a_self_signed_ca_certificate_is_refused_unpinned_and_accepted_pinned() {
    let cert = openssl_default("localhost");
    let addr = serve(&cert).await;
    // Unpinned, with or without the certificate as the extra CA: refused, and the
    // cause is that it is a CA certificate, which no CA file can fix.
    for extra_ca_pem in [None, Some(cert.pem.clone())] {
        let settings = TlsSettings {
            extra_ca_pem,
            ..TlsSettings::default()
        };
        let err = connect(&settings, "localhost", addr).await.unwrap_err();
        let Failure::Certificate(refused) = mailbridge_tls::failure(&err) else {
            panic!("{err}");
        };
        let shown = refused.end_entity().unwrap();
        assert_eq!(shown.fingerprint, Pin::of(&cert.der));
        assert!(shown.is_ca && shown.self_signed, "{shown}");
        assert_eq!(shown.names, ["localhost"]);
        assert!(shown.subject.contains("CN=localhost"), "{shown}");
        if settings.extra_ca_pem.is_some() {
            assert_eq!(refused.problem(), Problem::CaAsServerCertificate, "{err}");
        }
        // Either way, the fix offered is the pin, with the fingerprint.
        let hint = mailbridge_tls::ca_hint(&err);
        assert!(hint.contains(&Pin::of(&cert.der).to_string()), "{hint}");
    }
    // Pinned: accepted, whatever the roots.
    let settings = TlsSettings {
        pin: Some(Pin::of(&cert.der)),
        ..TlsSettings::default()
    };
    assert_eq!(
        connect(&settings, "localhost", addr).await.unwrap(),
        b"* OK ready"
    );
    // The pin stands for the certificate, whichever name it is reached by.
    assert_eq!(
        connect(&settings, "127.0.0.1", addr).await.unwrap(),
        b"* OK ready"
    );
}

#[tokio::test]
async fn a_wrong_pin_is_refused_and_says_which_certificate_came() {
    let cert = openssl_default("localhost");
    let addr = serve(&cert).await;
    let wrong = Pin::of(b"another certificate");
    let settings = TlsSettings {
        pin: Some(wrong),
        ..TlsSettings::default()
    };
    let err = connect(&settings, "localhost", addr).await.unwrap_err();
    assert_eq!(problem(&err), Problem::PinMismatch { pinned: wrong });
    let text = err.to_string();
    assert!(text.contains(&Pin::of(&cert.der).to_string()), "{text}");
    assert!(text.contains(&wrong.to_string()), "{text}");
}

#[tokio::test]
async fn a_pin_does_not_stop_the_normal_checks_for_other_certificates() {
    // The pin names another certificate; the server's, issued by a trusted CA for the
    // name, is accepted as always.
    let (ca, server) = private_ca("localhost");
    let addr = serve(&server).await;
    let settings = TlsSettings {
        extra_ca_pem: Some(ca.pem.clone()),
        pin: Some(Pin::of(b"another certificate")),
        ..TlsSettings::default()
    };
    assert_eq!(
        connect(&settings, "localhost", addr).await.unwrap(),
        b"* OK ready"
    );
}

#[tokio::test]
async fn each_certificate_problem_has_its_own_cause() {
    let (ca, server) = private_ca("mail.contoso.com");
    let addr = serve(&server).await;
    // Untrusted issuer: the private CA is not given.
    let err = connect(&TlsSettings::default(), "mail.contoso.com", addr)
        .await
        .unwrap_err();
    assert_eq!(problem(&err), Problem::UntrustedIssuer);
    let hint = mailbridge_tls::ca_hint(&err);
    assert!(
        hint.contains("CN=Contoso Root CA") && hint.contains("extra CA file"),
        "{hint}"
    );
    // Name mismatch: trusted, but for mail.contoso.com, reached as localhost.
    let trusted = TlsSettings {
        extra_ca_pem: Some(ca.pem.clone()),
        ..TlsSettings::default()
    };
    let err = connect(&trusted, "localhost", addr).await.unwrap_err();
    let Problem::WrongName {
        expected,
        presented,
    } = problem(&err)
    else {
        panic!("{err}");
    };
    assert_eq!(
        (expected.as_str(), presented),
        ("localhost", vec!["mail.contoso.com".to_owned()])
    );
    assert!(mailbridge_tls::ca_hint(&err).contains("tls_name"));
    // With tls_name, it connects.
    let named = TlsSettings {
        server_name: Some("mail.contoso.com".into()),
        ..trusted
    };
    assert_eq!(
        connect(&named, "localhost", addr).await.unwrap(),
        b"* OK ready"
    );
}

#[tokio::test]
async fn a_silent_server_on_a_plain_connection_is_named_an_implicit_tls_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tcp);
    });
    let mut stream = MailStream::plain(tokio::net::TcpStream::connect(addr).await.unwrap());
    // The configured timeout is longer than the greeting's; the greeting's applies
    // (here shortened by the caller's to keep the test quick).
    let err = stream
        .read_line(1000, Duration::from_millis(300))
        .await
        .unwrap_err();
    let mailbridge_tls::LineError::Io(e) = err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(mailbridge_tls::failure(&e), Failure::ExpectsImplicitTls),
        "{e}"
    );
    assert!(e.to_string().contains("set TLS to implicit"), "{e}");
    held.abort();
}

#[tokio::test]
async fn a_tls_record_where_the_greeting_belongs_is_named_an_implicit_tls_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        // A TLS alert record (what some servers send to a client that says nothing).
        let _ = tcp
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let mut stream = MailStream::plain(tokio::net::TcpStream::connect(addr).await.unwrap());
    let err = stream
        .read_line(1000, Duration::from_secs(30))
        .await
        .unwrap_err();
    let mailbridge_tls::LineError::Io(e) = err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(mailbridge_tls::failure(&e), Failure::ExpectsImplicitTls),
        "{e}"
    );
}
