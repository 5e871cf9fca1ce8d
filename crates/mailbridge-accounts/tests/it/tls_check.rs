//! `test receive|send` on TLS trouble, against scripted servers presenting what
//! on-premises servers present: `openssl req -x509`'s default certificate (self-signed,
//! CA:TRUE), a private CA's certificate, one for another name; and the port/mode
//! mismatches. Each failure names its own cause, shows the certificate, and gives the
//! fix (the pin command when pinning is the fix); a pin makes the connection work.

use std::net::SocketAddr;
use std::sync::Arc;

use mailbridge_accounts::check::{
    Identity, Report, SignIn, receive_graph, receive_imap, send_smtp,
};
use mailbridge_tls::Pin;
use mailbridge_types::config::{EndpointConfig, TlsMode, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

type NoToken = fn() -> std::future::Ready<Result<SecretString, String>>;

fn password() -> SignIn<NoToken> {
    SignIn::Password {
        user: "alice".to_owned(),
        password: SecretString::from("pw".to_owned()),
    }
}

fn who() -> Identity {
    Identity {
        account: "helpdesk".to_owned(),
        address: "alice@contoso.example".to_owned(),
        login: "alice".to_owned(),
        graph_user: "alice@contoso.example".to_owned(),
    }
}

struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

/// What `openssl req -x509 -subj /CN=localhost` makes: self-signed, CA:TRUE.
fn openssl_default() -> Cert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Cert {
        der: cert.der().clone(),
        key: key.serialize_der(),
    }
}

fn acceptor(cert: &Cert) -> tokio_rustls::TlsAcceptor {
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
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An IMAP server: greets, lists capabilities, refuses every sign-in.
async fn imap_session<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: S) {
    let mut s = BufReader::new(s);
    if s.write_all(b"* OK ready\r\n").await.is_err() {
        return;
    }
    let mut line = String::new();
    while s.read_line(&mut line).await.is_ok_and(|n| n > 0) {
        let tag = line.split(' ').next().unwrap_or("*").to_owned();
        let answer = if line.to_ascii_uppercase().contains("CAPABILITY") {
            format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n")
        } else {
            format!("{tag} NO [AUTHENTICATIONFAILED] refused\r\n")
        };
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        line.clear();
    }
}

/// IMAP over implicit TLS with `cert`.
async fn imaps(cert: &Cert) -> SocketAddr {
    let acceptor = acceptor(cert);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    imap_session(tls).await;
                }
            });
        }
    });
    addr
}

/// IMAP in plain text (a STARTTLS port).
async fn imap_plain() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(imap_session(tcp));
        }
    });
    addr
}

/// HTTPS with `cert`: every request gets 401 (what Graph answers without a token).
async fn https(cert: &Cert) -> SocketAddr {
    let acceptor = acceptor(cert);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = br#"{"error":{"code":"InvalidAuthenticationToken","message":"IDX14100: JWT is not well formed."}}"#;
                let head = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn endpoint(transport: Transport, host: &str, addr: SocketAddr, tls: TlsMode) -> EndpointConfig {
    EndpointConfig {
        transport,
        host: host.to_owned(),
        port: Some(addr.port()),
        tls: Some(tls),
        tls_name: None,
        extra_ca_file: None,
        tls_pin: None,
    }
}

fn connect_step(r: &Report) -> &mailbridge_accounts::check::StepResult {
    r.steps
        .iter()
        .find(|s| s.step == "connect+TLS")
        .unwrap_or_else(|| panic!("no connect+TLS step:\n{}", r.render()))
}

#[tokio::test]
async fn a_self_signed_ca_certificate_is_shown_with_the_pin_command_and_a_pin_connects() {
    let cert = openssl_default();
    let fingerprint = Pin::of(&cert.der).to_string();
    let addr = imaps(&cert).await;
    let mut e = endpoint(Transport::Imap, "localhost", addr, TlsMode::Implicit);
    // Also given as the extra CA, as the admin would try first.
    let ca = std::env::temp_dir().join(format!("mb-selfsigned-{}.pem", addr.port()));
    std::fs::write(
        &ca,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64_lines(&cert.der)
        ),
    )
    .unwrap();
    e.extra_ca_file = Some(ca.clone());
    let r = receive_imap(&e, &who(), password()).await;
    let _ = std::fs::remove_file(&ca);
    let step = connect_step(&r);
    assert!(!step.ok, "{}", r.render());
    assert!(step.detail.contains("CA certificate"), "{}", r.render());
    let shown = step.certificate.as_ref().expect("the certificate is shown");
    assert_eq!(shown.sha256, fingerprint);
    assert!(shown.ca && shown.self_signed, "{}", r.render());
    assert!(shown.subject.contains("localhost"), "{}", r.render());
    let fix = step.fix.as_deref().unwrap();
    assert!(
        fix.contains(&format!(
            "mailbridge account edit helpdesk --incoming-tls-pin {fingerprint}"
        )),
        "{}",
        r.render()
    );
    assert!(!fix.contains("add the server's CA"), "{}", r.render());
    let text = r.render();
    assert!(text.contains("certificate: subject"), "{text}");

    // Pinned: the connection is made and the check goes on to sign in.
    e.extra_ca_file = None;
    e.tls_pin = Some(fingerprint.clone());
    let r = receive_imap(&e, &who(), password()).await;
    let step = connect_step(&r);
    assert!(step.ok, "{}", r.render());
    assert!(step.detail.contains("pinned"), "{}", r.render());
    assert_eq!(
        r.failed_step().unwrap().step,
        "authenticate",
        "{}",
        r.render()
    );

    // A wrong pin: refused, and the fix says which certificate came.
    e.tls_pin = Some(Pin::of(b"the old certificate").to_string());
    let r = receive_imap(&e, &who(), password()).await;
    let step = connect_step(&r);
    assert!(!step.ok, "{}", r.render());
    let fix = step.fix.as_deref().unwrap();
    assert!(
        fix.contains(&Pin::of(b"the old certificate").to_string()) && fix.contains(&fingerprint),
        "{}",
        r.render()
    );
}

#[tokio::test]
async fn untrusted_issuer_and_name_mismatch_each_get_their_own_fix() {
    let ca = mailbridge_testkit::crypto::TestCa::generate().unwrap();
    let issued = ca.issue(&["mail.contoso.com"]).unwrap();
    let cert = Cert {
        der: der_of_pem(&issued.certificate_pem),
        key: pkcs8_der(&issued.key_pem),
    };
    let addr = imaps(&cert).await;
    // Untrusted issuer: the CA file, naming the issuer, or a pin.
    let mut e = endpoint(Transport::Imap, "localhost", addr, TlsMode::Implicit);
    e.tls_name = Some("mail.contoso.com".into());
    let r = receive_imap(&e, &who(), password()).await;
    let step = connect_step(&r);
    assert!(!step.ok, "{}", r.render());
    assert!(step.detail.contains("not a trusted CA"), "{}", r.render());
    let fix = step.fix.as_deref().unwrap();
    assert!(
        fix.contains("mailbridge test CA") && fix.contains("--extra-ca-file"),
        "{}",
        r.render()
    );
    // Trusted, but reached as localhost: the names, and --tls-name.
    let ca_file = std::env::temp_dir().join(format!("mb-ca-{}.pem", addr.port()));
    std::fs::write(&ca_file, &ca.certificate_pem).unwrap();
    e.extra_ca_file = Some(ca_file.clone());
    e.tls_name = None;
    let r = receive_imap(&e, &who(), password()).await;
    let _ = std::fs::remove_file(&ca_file);
    let step = connect_step(&r);
    assert!(!step.ok, "{}", r.render());
    assert!(
        step.detail
            .contains("is for mail.contoso.com, not for localhost"),
        "{}",
        r.render()
    );
    let fix = step.fix.as_deref().unwrap();
    assert!(
        fix.contains("--tls-name mail.contoso.com") && !fix.contains("extra CA"),
        "{}",
        r.render()
    );
}

#[tokio::test]
async fn a_tls_mode_that_does_not_match_the_port_is_named_for_what_it_is() {
    // Implicit TLS on a plain-text (STARTTLS) port.
    let plain = imap_plain().await;
    let r = receive_imap(
        &endpoint(Transport::Imap, "127.0.0.1", plain, TlsMode::Implicit),
        &who(),
        password(),
    )
    .await;
    let step = connect_step(&r);
    assert!(!step.ok, "{}", r.render());
    let fix = step.fix.as_deref().unwrap();
    assert!(fix.contains("set TLS to STARTTLS"), "{}", r.render());
    assert!(
        step.certificate.is_none() && !fix.contains("CA"),
        "{}",
        r.render()
    );
    // STARTTLS on an implicit-TLS port: the server waits for a handshake and says
    // nothing; the greeting's own timeout (10 s, not the command's 60 s) names it.
    let tls = imaps(&openssl_default()).await;
    let r = receive_imap(
        &endpoint(Transport::Imap, "127.0.0.1", tls, TlsMode::StartTls),
        &who(),
        password(),
    )
    .await;
    let step = connect_step(&r);
    assert!(!step.ok, "{}", r.render());
    assert!(step.detail.contains("sent no greeting"), "{}", r.render());
    assert!(
        step.fix.as_deref().unwrap().contains("set TLS to implicit"),
        "{}",
        r.render()
    );
}

#[tokio::test]
async fn smtp_without_tls_where_auth_comes_only_after_starttls_says_so() {
    // smtp.office365.com:587 offers AUTH only after STARTTLS.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut s = BufReader::new(tcp);
                let _ = s.write_all(b"220 mail.contoso.example ready\r\n").await;
                let mut line = String::new();
                while s.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    let upper = line.to_ascii_uppercase();
                    let answer: &[u8] = if upper.starts_with("EHLO") {
                        b"250-mail.contoso.example\r\n250-SIZE 157286400\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"530 5.7.57 Client not authenticated to send mail\r\n"
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    let get = || std::future::ready(Ok::<_, String>(SecretString::from("opaque-token")));
    let r = send_smtp(
        &endpoint(Transport::Smtp, "127.0.0.1", addr, TlsMode::None),
        &who(),
        "bob@contoso.example",
        SignIn::Token {
            grant: mailbridge_auth::scopes::Grant::AppOnly,
            get,
        },
    )
    .await;
    let failed = r.failed_step().unwrap();
    assert_eq!(failed.step, "authenticate", "{}", r.render());
    let fix = failed.fix.as_deref().unwrap();
    assert!(
        fix.contains("no AUTH before STARTTLS") && fix.contains("set TLS to STARTTLS"),
        "{}",
        r.render()
    );
    assert!(!fix.contains("New-ServicePrincipal"), "{}", r.render());
}

#[tokio::test]
async fn https_endpoints_show_the_certificate_and_take_a_pin_too() {
    let cert = openssl_default();
    let fingerprint = Pin::of(&cert.der).to_string();
    let addr = https(&cert).await;
    let mut e = endpoint(
        Transport::Graph,
        &format!("https://localhost:{}", addr.port()),
        addr,
        TlsMode::Implicit,
    );
    e.port = None;
    e.tls = None;
    let r = receive_graph(&e, &who(), password()).await;
    let step = connect_step(&r);
    assert!(!step.ok, "{}", r.render());
    assert_eq!(
        step.certificate.as_ref().map(|c| c.sha256.as_str()),
        Some(fingerprint.as_str()),
        "{}",
        r.render()
    );
    assert!(
        step.fix
            .as_deref()
            .unwrap()
            .contains(&format!("--incoming-tls-pin {fingerprint}")),
        "{}",
        r.render()
    );
    e.tls_pin = Some(fingerprint.clone());
    let r = receive_graph(&e, &who(), password()).await;
    let step = connect_step(&r);
    assert!(step.ok, "{}", r.render());
    assert!(step.detail.contains("HTTP 401"), "{}", r.render());

    // The Graph and EWS clients that fetch and send use take the pin too: the server's
    // answer (401) comes through, not a certificate error; without it, a certificate
    // error.
    let token = SecretString::from("not-a-token".to_owned());
    let mailbox = mailbridge_graph::Mailbox::User("alice@contoso.example".into());
    for pin in [Some(Pin::parse(&fingerprint).unwrap()), None] {
        let mut config =
            mailbridge_graph::GraphConfig::new(&format!("https://localhost:{}/v1.0", addr.port()));
        config.tls_pin = pin;
        config.attempts = 1;
        let graph = mailbridge_graph::GraphClient::new(config).unwrap();
        let err = graph
            .folder_counts(&token, &mailbox, "inbox")
            .await
            .unwrap_err();
        let answered = matches!(&err, mailbridge_graph::ClientError::Graph(g) if g.status == 401);
        assert_eq!(answered, pin.is_some(), "{err:?}");

        let mut config = mailbridge_ews::EwsConfig::new(&format!(
            "https://localhost:{}/EWS/Exchange.asmx",
            addr.port()
        ));
        config.tls_pin = pin;
        config.attempts = 1;
        let ews = mailbridge_ews::EwsClient::new(config).unwrap();
        let auth = mailbridge_ews::EwsAuth::Bearer {
            token: mailbridge_auth::source::fixed(token.clone()),
        };
        let err = ews.find_first_item(&auth, "inbox").await.unwrap_err();
        let answered = matches!(&err, mailbridge_ews::EwsError::Unauthorized { .. });
        assert_eq!(answered, pin.is_some(), "{err:?}");
    }
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn der_of_pem(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from(pem_body(pem))
}

fn pkcs8_der(pem: &str) -> Vec<u8> {
    pem_body(pem)
}
