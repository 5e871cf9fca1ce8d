//! The endpoint-URL grammar: `scheme://host[:port][/path]` for an account's or a
//! provider's incoming and outgoing side (`imaps://`, `imap+starttls://`,
//! `imap+auto://`, `imap://`, the same for `pop3` and `smtp`, `graph+https://`,
//! `ews+https://`), and an endpoint written back in that form.

use mailbridge_types::config::{EndpointConfig, TlsMode, Transport};

use crate::error::{Error, ErrorKind, Result};

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

/// Parses `scheme://host[:port][/path]` into an endpoint.
pub fn parse_endpoint(text: &str) -> Result<EndpointConfig> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(invalid(format!(
            "{text:?} is not an endpoint: write it as imaps://host[:port], imap+starttls://host, pop3s://host, smtp+starttls://host, smtps://host, graph+https://graph.microsoft.com or ews+https://host/EWS/Exchange.asmx"
        )));
    };
    let (transport, tls) = match scheme.to_ascii_lowercase().as_str() {
        "imaps" => (Transport::Imap, TlsMode::Implicit),
        "imap+starttls" => (Transport::Imap, TlsMode::StartTls),
        "imap" => (Transport::Imap, TlsMode::None),
        "imap+auto" => (Transport::Imap, TlsMode::Auto),
        "pop3s" => (Transport::Pop3, TlsMode::Implicit),
        "pop3+starttls" | "pop3+stls" => (Transport::Pop3, TlsMode::StartTls),
        "pop3" => (Transport::Pop3, TlsMode::None),
        "pop3+auto" => (Transport::Pop3, TlsMode::Auto),
        "smtps" => (Transport::Smtp, TlsMode::Implicit),
        "smtp+starttls" | "submission" => (Transport::Smtp, TlsMode::StartTls),
        "smtp" => (Transport::Smtp, TlsMode::None),
        "smtp+auto" => (Transport::Smtp, TlsMode::Auto),
        "graph+https" | "graph+http" | "ews+https" | "ews+http" => {
            let (kind, web) = scheme.split_once('+').unwrap_or_default();
            let transport = if kind == "graph" {
                Transport::Graph
            } else {
                Transport::Ews
            };
            return Ok(EndpointConfig {
                transport,
                host: format!("{web}://{rest}"),
                port: None,
                tls: None,
                tls_name: None,
                extra_ca_file: None,
                tls_pin: None,
            });
        }
        other => {
            return Err(invalid(format!(
                "unknown endpoint scheme {other:?}: use imaps, imap+starttls, imap, pop3s, pop3+starttls, pop3, smtps, smtp+starttls, smtp, graph+https or ews+https"
            )));
        }
    };
    let authority = rest.trim_end_matches('/');
    // host, host:port, [IPv6] or [IPv6]:port; the host's syntax is checked with the
    // account (`incoming.host`), so every way in gets the same message.
    let (host, port_text) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            return Err(invalid(format!(
                "{text:?}: the IPv6 address has no closing bracket: write it as [2001:db8::1] or [2001:db8::1]:993"
            )));
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(format!(
                "{text:?}: {address:?} in brackets is not an IPv6 address (only IPv6 addresses are written in brackets)"
            )));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                invalid(format!(
                    "{text:?}: after the bracketed address comes only :port"
                ))
            })?),
        };
        (address, port)
    } else if authority.matches(':').count() > 1 {
        return Err(invalid(format!(
            "{text:?}: write an IPv6 address in brackets, as in imaps://[2001:db8::1]:993"
        )));
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = port_text
        .map(|p| {
            p.parse::<u16>().map_err(|e| {
                Error::with_source(
                    ErrorKind::Invalid,
                    format!("{p:?} in {text:?} is not a port number (1-65535)"),
                    e,
                )
            })
        })
        .transpose()?;
    if host.is_empty() || host.contains('/') {
        return Err(invalid(format!("{text:?} has no host name")));
    }
    Ok(EndpointConfig {
        transport,
        host: host.to_owned(),
        port,
        tls: Some(tls),
        tls_name: None,
        extra_ca_file: None,
        tls_pin: None,
    })
}

/// An endpoint written back in the `scheme://host:port` form.
pub fn endpoint_text(e: &EndpointConfig) -> String {
    match e.transport {
        Transport::Graph | Transport::Ews => {
            format!(
                "{}+{}",
                if e.transport == Transport::Graph {
                    "graph"
                } else {
                    "ews"
                },
                e.host
            )
        }
        t => {
            let base = match t {
                Transport::Imap => "imap",
                Transport::Pop3 => "pop3",
                _ => "smtp",
            };
            let scheme = match e.tls_mode() {
                TlsMode::Implicit => format!("{base}s"),
                TlsMode::StartTls => format!("{base}+starttls"),
                TlsMode::None => base.to_owned(),
                TlsMode::Auto => format!("{base}+auto"),
            };
            format!("{scheme}://{}:{}", e.host, e.port())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print_back() {
        for (text, transport, tls, port) in [
            (
                "imaps://mail.example.org",
                Transport::Imap,
                TlsMode::Implicit,
                993,
            ),
            (
                "imap+starttls://mail.example.org:1143",
                Transport::Imap,
                TlsMode::StartTls,
                1143,
            ),
            (
                "pop3s://127.0.0.1:9995",
                Transport::Pop3,
                TlsMode::Implicit,
                9995,
            ),
            (
                "smtp+starttls://smtp.office365.com:587",
                Transport::Smtp,
                TlsMode::StartTls,
                587,
            ),
            ("smtp://[::1]:2525", Transport::Smtp, TlsMode::None, 2525),
            (
                "imap+auto://mail.example.org",
                Transport::Imap,
                TlsMode::Auto,
                993,
            ),
            (
                "smtp+auto://mail.example.org:2587",
                Transport::Smtp,
                TlsMode::Auto,
                2587,
            ),
        ] {
            let e = parse_endpoint(text).unwrap();
            assert_eq!(
                (e.transport, e.tls_mode(), e.port()),
                (transport, tls, port),
                "{text}"
            );
        }
        let g = parse_endpoint("graph+https://graph.microsoft.us").unwrap();
        assert_eq!(g.transport, Transport::Graph);
        assert_eq!(g.host, "https://graph.microsoft.us");
        assert_eq!(endpoint_text(&g), "graph+https://graph.microsoft.us");
        let e = parse_endpoint("imaps://mail.example.org").unwrap();
        assert_eq!(endpoint_text(&e), "imaps://mail.example.org:993");
        let e = parse_endpoint("pop3+auto://mail.example.org:1110").unwrap();
        assert_eq!(endpoint_text(&e), "pop3+auto://mail.example.org:1110");
        assert!(
            parse_endpoint("mail.example.org")
                .unwrap_err()
                .to_string()
                .contains("imaps://")
        );
        assert!(
            parse_endpoint("imap4://x")
                .unwrap_err()
                .to_string()
                .contains("unknown endpoint scheme")
        );
        assert!(parse_endpoint("imaps://x:99999").is_err());
        let e = parse_endpoint("imaps://[2001:db8::1]:1993").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("2001:db8::1", Some(1993)));
        assert_eq!(parse_endpoint("imaps://[::1]").unwrap().host, "::1");
        for (bad, says) in [
            ("imaps://[::1", "no closing bracket"),
            ("imaps://::1", "in brackets"),
            ("imaps://[mail.example.org]:993", "not an IPv6 address"),
            ("imaps://[::1]993", "only :port"),
            ("imaps://mail.example.org:", "not a port number"),
        ] {
            let err = parse_endpoint(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // Port 0 and a host with a space parse, and the account checks name them.
        assert_eq!(parse_endpoint("imaps://x:0").unwrap().port, Some(0));
        assert_eq!(
            parse_endpoint("imaps://mail example.org").unwrap().host,
            "mail example.org"
        );
    }
}
