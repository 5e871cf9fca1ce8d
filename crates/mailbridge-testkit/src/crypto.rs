//! Keys, certificates and compact JWTs for the emulator.
//!
//! - [`SigningKey`]: the tenant's RSA token-signing key, published in the JWKS.
//! - [`Jwt`]: a compact JWS split into header, claims and signature, for reading client
//!   assertions and access tokens without trusting them.
//! - [`TestCa`]: a per-run certificate authority for the TLS listeners of Dovecot,
//!   Postfix and the HTTPS endpoints.
//! - [`CertificateCredential`]: an app certificate (key + self-signed certificate) as an
//!   admin would upload it to "Certificates & secrets", with both thumbprints.
//!
//! Hand-written: a JWT is three base64url parts, and the algorithms come from aws-lc-rs
//! and rustls-webpki, which the rest of the workspace already uses.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

/// base64url without padding, as JWTs use it.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

/// SHA-1 of `bytes` (certificate thumbprints only).
pub fn sha1(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .to_vec()
}

/// Random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut out).unwrap_or_default();
    out
}

/// A random URL-safe token of `len` bytes of entropy.
pub fn random_token(len: usize) -> String {
    b64url(&random_bytes(len))
}

/// Error from key and certificate handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("RSA key generation failed")]
    KeyGeneration,
    #[error("signing failed")]
    Signing,
    #[error("certificate generation failed")]
    Certificate(#[from] rcgen::Error),
    #[error("certificate PEM is not valid")]
    Pem,
}

/// The emulator's RSA token-signing key, with the certificate published in the JWKS.
pub struct SigningKey {
    key: RsaKeyPair,
    /// Key id (`kid`), which Microsoft sets equal to `x5t`.
    pub kid: String,
    certificate_der: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh 2048-bit key and a self-signed certificate for it.
    pub fn generate() -> Result<Self, CryptoError> {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| CryptoError::KeyGeneration)?;
        let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
            .map_err(|_| CryptoError::KeyGeneration)?;
        let rc_key = rcgen::KeyPair::try_from(pkcs8.as_ref())?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "accounts.accesscontrol.windows.net",
        );
        let cert = params.self_signed(&rc_key)?;
        let certificate_der = cert.der().to_vec();
        let kid = b64url(&sha1(&certificate_der));
        Ok(Self {
            key,
            kid,
            certificate_der,
        })
    }

    /// Signs `header.claims` with RS256 and returns the compact JWT.
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> Result<String, CryptoError> {
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = rsa_sign(
            &self.key,
            &signature::RSA_PKCS1_SHA256,
            signing_input.as_bytes(),
        )?;
        Ok(format!("{signing_input}.{}", b64url(&sig)))
    }

    /// The JWKS document (`/discovery/v2.0/keys`).
    pub fn jwks(&self, issuer: &str) -> Value {
        let public = self.key.public_key();
        json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "kid": self.kid,
                "x5t": self.kid,
                "n": b64url(public.modulus().big_endian_without_leading_zero()),
                "e": b64url(public.exponent().big_endian_without_leading_zero()),
                "x5c": [STANDARD.encode(&self.certificate_der)],
                "cloud_instance_name": "microsoftonline.com",
                "issuer": issuer,
            }]
        })
    }

    /// Verifies an RS256 JWT signed by this key.
    pub fn verify(&self, jwt: &Jwt) -> bool {
        let public = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.key.public_key().as_ref(),
        );
        public
            .verify(jwt.signing_input.as_bytes(), &jwt.signature)
            .is_ok()
    }
}

fn rsa_sign(
    key: &RsaKeyPair,
    alg: &'static dyn signature::RsaEncoding,
    msg: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(alg, &SystemRandom::new(), msg, &mut sig)
        .map_err(|_| CryptoError::Signing)?;
    Ok(sig)
}

/// A compact JWT split into its parts. Parsing does not verify anything.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub header: Value,
    pub claims: Value,
    pub signature: Vec<u8>,
    /// `base64url(header) "." base64url(claims)`, what the signature covers.
    pub signing_input: String,
}

impl Jwt {
    /// Splits and decodes a compact JWT; `None` when it is not one.
    pub fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&b64url_decode(h)?).ok()?;
        let claims: Value = serde_json::from_slice(&b64url_decode(c)?).ok()?;
        if !header.is_object() || !claims.is_object() {
            return None;
        }
        Some(Self {
            header,
            claims,
            signature: b64url_decode(s)?,
            signing_input: format!("{h}.{c}"),
        })
    }

    /// A string header field.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric claim (`exp`, `nbf`, `iat`).
    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(Value::as_i64)
    }

    /// Verifies the signature with the public key of an X.509 certificate (DER), for
    /// `RS256` or `PS256`.
    pub fn verify_with_certificate(&self, certificate_der: &[u8]) -> bool {
        let alg: &dyn rustls::pki_types::SignatureVerificationAlgorithm =
            match self.header_str("alg") {
                Some("RS256") => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
                Some("PS256") => webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                _ => return false,
            };
        let der = CertificateDer::from(certificate_der);
        let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
            return false;
        };
        cert.verify_signature(alg, self.signing_input.as_bytes(), &self.signature)
            .is_ok()
    }
}

/// First certificate of a PEM text, as DER.
pub fn certificate_der_from_pem(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// `x5t#S256` of a certificate: base64url(SHA-256(DER)).
pub fn x5t_s256(certificate_der: &[u8]) -> String {
    b64url(&sha256(certificate_der))
}

/// `x5t` of a certificate: base64url(SHA-1(DER)), the raw digest bytes.
pub fn x5t_sha1(certificate_der: &[u8]) -> String {
    b64url(&sha1(certificate_der))
}

/// An app certificate credential: private key and self-signed certificate, as an admin
/// creates with `openssl req -x509` or `New-SelfSignedCertificate` and uploads.
pub struct CertificateCredential {
    key: RsaKeyPair,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    pub certificate_der: Vec<u8>,
}

impl std::fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("x5t#S256", &self.x5t_s256())
            .finish_non_exhaustive()
    }
}

impl CertificateCredential {
    /// A fresh RSA-2048 key with a self-signed certificate named `subject`.
    pub fn generate(subject: &str) -> Result<Self, CryptoError> {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| CryptoError::KeyGeneration)?;
        let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
            .map_err(|_| CryptoError::KeyGeneration)?;
        let rc_key = rcgen::KeyPair::try_from(pkcs8.as_ref())?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, subject);
        let cert = params.self_signed(&rc_key)?;
        Ok(Self {
            key,
            key_pem: rc_key.serialize_pem(),
            certificate_pem: cert.pem(),
            certificate_der: cert.der().to_vec(),
        })
    }

    /// The SHA-256 thumbprint as the portal shows it (`x5t#S256`, base64url).
    pub fn x5t_s256(&self) -> String {
        x5t_s256(&self.certificate_der)
    }

    /// The SHA-1 thumbprint as `x5t` (base64url of the raw digest).
    pub fn x5t_sha1(&self) -> String {
        x5t_sha1(&self.certificate_der)
    }

    /// Signs a JWT with PS256 (`pss == true`) or RS256, with the given header and claims.
    pub fn sign_jwt(
        &self,
        header: &Value,
        claims: &Value,
        pss: bool,
    ) -> Result<String, CryptoError> {
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let alg: &'static dyn signature::RsaEncoding = if pss {
            &signature::RSA_PSS_SHA256
        } else {
            &signature::RSA_PKCS1_SHA256
        };
        let sig = rsa_sign(&self.key, alg, signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64url(&sig)))
    }
}

/// A rustls client configuration that trusts only the CA in `ca_pem`.
pub fn client_config_trusting(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(der) = certificate_der_from_pem(ca_pem) {
        let _ = roots.add(CertificateDer::from(der));
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_or_else(
        |_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        },
        |b| b.with_root_certificates(roots).with_no_client_auth(),
    )
}

/// A per-run certificate authority for the emulator's TLS listeners.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// The CA certificate in PEM form: what clients add as an extra trusted CA.
    pub certificate_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A server certificate issued by the [`TestCa`].
#[derive(Clone)]
pub struct ServerCertificate {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A fresh CA named "mailbridge test CA".
    pub fn generate() -> Result<Self, CryptoError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mailbridge test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key)?;
        let certificate_pem = issuer.pem();
        Ok(Self {
            issuer,
            certificate_pem,
        })
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Result<ServerCertificate, CryptoError> {
        let key = rcgen::KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mailbridge sandbox");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCertificate {
            certificate_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A rustls client configuration that trusts only this CA.
    pub fn client_config(&self) -> rustls::ClientConfig {
        client_config_trusting(&self.certificate_pem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x5t_is_base64url_of_raw_sha1_digest() {
        // microsoft-protocols.md §1.3.4: hex 84E05C1D98BCE3A5421D225B140B36E86A3D5534
        // -> x5t hOBcHZi846VCHSJbFAs26Go9VTQ
        let raw: Vec<u8> = (0..20)
            .map(|i| {
                u8::from_str_radix(
                    &"84E05C1D98BCE3A5421D225B140B36E86A3D5534"[i * 2..i * 2 + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(b64url(&raw), "hOBcHZi846VCHSJbFAs26Go9VTQ");
    }

    #[test]
    fn signing_key_signs_what_it_verifies_and_rejects_tampering() {
        let key = SigningKey::generate().unwrap();
        let token = key
            .sign_jwt(&json!({"alg":"RS256","typ":"JWT"}), &json!({"aud":"x"}))
            .unwrap();
        let jwt = Jwt::parse(&token).unwrap();
        assert!(key.verify(&jwt));
        let mut tampered = jwt.clone();
        tampered.signing_input.push('x');
        assert!(!key.verify(&tampered));
    }

    #[test]
    fn certificate_credential_signatures_verify_with_its_certificate() {
        let cred = CertificateCredential::generate("connector").unwrap();
        for pss in [true, false] {
            let alg = if pss { "PS256" } else { "RS256" };
            let token = cred
                .sign_jwt(&json!({"alg":alg,"typ":"JWT"}), &json!({"iss":"x"}), pss)
                .unwrap();
            let jwt = Jwt::parse(&token).unwrap();
            assert!(jwt.verify_with_certificate(&cred.certificate_der), "{alg}");
            let other = CertificateCredential::generate("other").unwrap();
            assert!(
                !jwt.verify_with_certificate(&other.certificate_der),
                "{alg}"
            );
        }
    }

    #[test]
    fn garbage_is_not_a_jwt() {
        for s in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "e30.e30",
            "e30.e30.!!",
            "W10.e30.AA",
        ] {
            assert!(Jwt::parse(s).is_none(), "{s}");
        }
    }
}
