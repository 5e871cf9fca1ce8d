//! Client assertions (certificate credentials), `microsoft-protocols.md` §1.3.4: a JWT
//! signed with the app certificate's key, `PS256` + `x5t#S256` or `RS256` + `x5t`,
//! `aud` = the tenant's token endpoint, `iss` = `sub` = client id, short `exp`, unique `jti`.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use super::errors;
use crate::aad::AadError;
use crate::crypto::{Jwt, certificate_der_from_pem, sha1, x5t_s256, x5t_sha1};
use crate::emulator::Emulator;
use crate::model::AppRegistration;

/// `client_assertion_type` of a JWT assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Time as .NET's round-trip format prints it (`2023-03-17T12:00:00.0000000Z`).
pub(crate) fn dotnet_time(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
    ))
    .unwrap_or_default()
}

fn unix_time(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).map_or_else(|_| secs.to_string(), dotnet_time)
}

/// Checks a client assertion for `app` presented at the token endpoint of `tenant_id`
/// (requested through the path segment `segment_raw`).
pub(crate) fn validate(
    emulator: &Emulator,
    app: &AppRegistration,
    tenant_id: Option<Uuid>,
    segment_raw: &str,
    assertion_type: Option<&str>,
    assertion: &str,
) -> Result<(), AadError> {
    match assertion_type {
        None => return Err(errors::missing_parameter("client_assertion_type")),
        Some(JWT_BEARER) => {}
        Some(other) => return Err(errors::invalid_parameter("client_assertion_type", other)),
    }
    let Some(jwt) = Jwt::parse(assertion) else {
        return Err(errors::invalid_jwt(""));
    };
    if !matches!(jwt.header_str("alg"), Some("RS256" | "PS256")) {
        return Err(errors::assertion_bad_signature());
    }
    let wanted_s256 = jwt.header_str("x5t#S256");
    let wanted_sha1 = jwt.header_str("x5t");
    let cert = app.certificates.iter().find_map(|c| {
        let der = certificate_der_from_pem(&c.certificate_pem)?;
        let hit = wanted_s256.is_some_and(|t| t == x5t_s256(&der))
            || wanted_sha1.is_some_and(|t| t == x5t_sha1(&der));
        hit.then_some((der, c.expires))
    });
    let Some((der, expires)) = cert else {
        return Err(errors::assertion_key_not_registered());
    };
    let now = emulator.now();
    if now >= expires {
        let hex = sha1(&der).iter().fold(String::new(), |mut acc, b| {
            let _ = write!(acc, "{b:02X}");
            acc
        });
        return Err(errors::assertion_key_expired(&hex, &dotnet_time(expires)));
    }
    if !jwt.verify_with_certificate(&der) {
        return Err(errors::assertion_bad_signature());
    }

    let base = emulator.base_url();
    let aud = jwt.claim_str("aud").unwrap_or_default();
    let mut audiences = vec![format!("{base}/{segment_raw}/oauth2/v2.0/token")];
    if let Some(tid) = tenant_id {
        audiences.push(format!("{base}/{tid}/oauth2/v2.0/token"));
        audiences.push(format!("{base}/{tid}/oauth2/token"));
        let domains = emulator.read(|m| {
            m.tenant(&tid.to_string())
                .map(|t| t.domains.clone())
                .unwrap_or_default()
        });
        for d in domains {
            audiences.push(format!("{base}/{d}/oauth2/v2.0/token"));
        }
    }
    if !audiences.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
        return Err(errors::invalid_jwt(&format!(
            "The audience claim value '{aud}' is invalid. Expected the token endpoint of the tenant."
        )));
    }
    let client_id = app.client_id.to_string();
    let iss = jwt.claim_str("iss").unwrap_or_default();
    let sub = jwt.claim_str("sub").unwrap_or_default();
    if !iss.eq_ignore_ascii_case(&client_id) {
        return Err(errors::invalid_jwt(&format!(
            "The issuer claim value '{iss}' is invalid. Expected the client id."
        )));
    }
    if !sub.eq_ignore_ascii_case(iss) {
        return Err(errors::subject_mismatch(sub, iss));
    }
    let Some(exp) = jwt.claim_i64("exp") else {
        return Err(errors::invalid_jwt("The 'exp' claim is missing."));
    };
    let nbf = jwt.claim_i64("nbf");
    let skew = emulator.knobs().clock_skew_secs;
    let unix = now.unix_timestamp();
    if unix > exp.saturating_add(skew) || nbf.is_some_and(|n| unix.saturating_add(skew) < n) {
        let from = nbf.or_else(|| jwt.claim_i64("iat")).unwrap_or(0);
        return Err(errors::assertion_time_range(
            &dotnet_time(now),
            &unix_time(from),
            &unix_time(exp),
        ));
    }
    if let Some(jti) = jwt.claim_str("jti") {
        let key = format!("{client_id} {jti}");
        let mut st = emulator.identity_state();
        if st.assertions.contains_key(&key) {
            return Err(errors::invalid_jwt(&format!(
                "The client assertion was already used (jti '{jti}'). Create a new assertion for each request."
            )));
        }
        st.assertions.insert(key, exp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, OnceLock};

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::crypto::CertificateCredential;
    use crate::model::{Tenant, TenantModel};

    fn fixture() -> &'static (Emulator, AppRegistration, Arc<CertificateCredential>) {
        static F: OnceLock<(Emulator, AppRegistration, Arc<CertificateCredential>)> =
            OnceLock::new();
        F.get_or_init(|| {
            let cert = Arc::new(CertificateCredential::generate("t").unwrap());
            let app = AppRegistration::new("a").with_certificate(
                &cert.certificate_pem,
                OffsetDateTime::now_utc() + time::Duration::days(1),
            );
            let model = TenantModel::builder()
                .tenant(Tenant::new("T", "t.example").with_app(app.clone()))
                .build()
                .unwrap();
            (Emulator::new(model).unwrap(), app, cert)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any claims, however extreme, give an answer, never a panic.
        #[test]
        fn arbitrary_claims_never_panic(
            exp in any::<i64>(),
            nbf in proptest::option::of(any::<i64>()),
            iat in proptest::option::of(any::<i64>()),
            iss in proptest::option::of(".{0,40}"),
            aud in proptest::option::of(".{0,40}"),
            jti in ".{0,10}",
            pss in any::<bool>(),
        ) {
            let (emulator, app, cert) = fixture();
            let header = if pss {
                json!({"alg": "PS256", "x5t#S256": cert.x5t_s256()})
            } else {
                json!({"alg": "RS256", "x5t": cert.x5t_sha1()})
            };
            // `None` stands for the right value, so the time checks are reached too.
            let iss = iss.unwrap_or_else(|| app.client_id.to_string());
            let aud = aud.unwrap_or_else(|| format!("{}/t.example/oauth2/v2.0/token", emulator.base_url()));
            let claims = json!({"exp": exp, "nbf": nbf, "iat": iat, "iss": iss, "sub": iss, "aud": aud, "jti": jti});
            let token = cert.sign_jwt(&header, &claims, pss).unwrap();
            let _ = validate(emulator, app, None, "t.example", Some(JWT_BEARER), &token);
        }

        /// Garbage assertions are refused, never a panic.
        #[test]
        fn garbage_assertions_are_refused(text in ".{0,200}") {
            let (emulator, app, _) = fixture();
            prop_assert!(validate(emulator, app, None, "t.example", Some(JWT_BEARER), &text).is_err());
        }
    }

    #[test]
    fn dotnet_time_has_seven_fraction_digits() {
        let t = time::macros::datetime!(2023-03-17 12:00:00 UTC);
        assert_eq!(dotnet_time(t), "2023-03-17T12:00:00.0000000Z");
        assert_eq!(unix_time(i64::MAX), i64::MAX.to_string());
    }
}
