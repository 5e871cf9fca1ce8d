//! The SOAP 1.1 envelope of EWS (`microsoft-protocols.md` §4.2, §4.7, §4.8): reading a
//! request into a small element tree with size limits, and writing responses and faults.
//!
//! Reading never panics on untrusted bytes: every failure is a [`SchemaError`], which
//! the caller answers with the `ErrorSchemaValidation` fault as Exchange does. Document
//! type declarations are refused (Exchange: "DTD is prohibited"), so no entity can
//! expand.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// `soap:` namespace.
pub const SOAP_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// `t:` namespace.
pub const TYPES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// `m:` namespace.
pub const MESSAGES_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// `e:` namespace.
pub const ERRORS_NS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 64;
/// Most elements accepted in one request.
const MAX_ELEMENTS: usize = 100_000;

/// The namespace of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    Soap,
    Types,
    Messages,
    /// Any other namespace, or none.
    Other,
}

impl Ns {
    fn from_uri(uri: &[u8]) -> Self {
        match uri {
            b"http://schemas.xmlsoap.org/soap/envelope/" => Ns::Soap,
            b"http://schemas.microsoft.com/exchange/services/2006/types" => Ns::Types,
            b"http://schemas.microsoft.com/exchange/services/2006/messages" => Ns::Messages,
            _ => Ns::Other,
        }
    }
}

/// One element of a request.
#[derive(Debug, Clone)]
pub struct Element {
    pub ns: Ns,
    /// Local name.
    pub name: String,
    /// Attributes without a namespace prefix (namespace declarations left out).
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The element's text (concatenated, entities resolved).
    pub text: String,
}

impl Element {
    /// The first child with this namespace and local name.
    pub fn child(&self, ns: Ns, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.ns == ns && c.name == name)
    }

    /// Every child with this namespace and local name.
    pub fn children_named<'a>(
        &'a self,
        ns: Ns,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.ns == ns && c.name == name)
    }

    /// An attribute value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed text.
    pub fn text(&self) -> &str {
        self.text.trim()
    }

    /// The text of a child, trimmed.
    pub fn child_text(&self, ns: Ns, name: &str) -> Option<&str> {
        self.child(ns, name).map(Element::text)
    }
}

/// Why a request is not a valid EWS SOAP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request failed schema validation: {violation}")]
pub struct SchemaError {
    /// What is wrong, as Exchange's `Violation` puts it.
    pub violation: String,
    /// 1-based line and column of the problem, when known.
    pub position: Option<(usize, usize)>,
}

impl SchemaError {
    /// A violation without a position.
    pub fn new(violation: impl Into<String>) -> Self {
        Self {
            violation: violation.into(),
            position: None,
        }
    }
}

fn line_col(bytes: &[u8], offset: u64) -> (usize, usize) {
    let offset = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let before = bytes.get(..offset).unwrap_or_default();
    let line = before.split(|b| *b == b'\n').count();
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, col)
}

/// Parses an XML document into its root element.
pub fn parse_document(bytes: &[u8]) -> Result<Element, SchemaError> {
    let mut reader = NsReader::from_reader(bytes);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let fail = |reader: &NsReader<&[u8]>, violation: String| SchemaError {
        violation,
        position: Some(line_col(bytes, reader.buffer_position())),
    };
    loop {
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(ok) => ok,
            Err(e) => {
                return Err(SchemaError {
                    violation: format!("The XML is not well formed: {e}"),
                    position: Some(line_col(bytes, reader.error_position())),
                });
            }
        };
        let ns = match resolved {
            ResolveResult::Bound(n) => Ns::from_uri(n.as_ref()),
            ResolveResult::Unbound => Ns::Other,
            ResolveResult::Unknown(p) => {
                return Err(fail(
                    &reader,
                    format!("'{}' is an undeclared prefix.", String::from_utf8_lossy(&p)),
                ));
            }
        };
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(fail(
                        &reader,
                        "The request is too large or too deep.".into(),
                    ));
                }
                if root.is_some() && stack.is_empty() {
                    return Err(fail(&reader, "There are multiple root elements.".into()));
                }
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let mut attrs = Vec::new();
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| fail(&reader, format!("Bad attribute: {e}")))?;
                    let key = attr.key;
                    if key.as_ref().starts_with(b"xmlns") || key.prefix().is_some() {
                        continue;
                    }
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::default())
                        .map_err(|e| fail(&reader, format!("Bad attribute value: {e}")))?;
                    attrs.push((
                        String::from_utf8_lossy(key.local_name().as_ref()).into_owned(),
                        value.into_owned(),
                    ));
                }
                let element = Element {
                    ns,
                    name,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                };
                if is_empty {
                    close(&mut stack, &mut root, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                if let Some(element) = stack.pop() {
                    close(&mut stack, &mut root, element);
                }
            }
            Event::Text(text) => {
                let decoded = text
                    .xml_content(quick_xml::XmlVersion::default())
                    .map_err(|e| fail(&reader, format!("Bad text: {e}")))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&decoded),
                    None if decoded.trim().is_empty() => {}
                    None => {
                        return Err(fail(&reader, "Data at the root level is invalid.".into()));
                    }
                }
            }
            Event::CData(data) => {
                let decoded = data
                    .xml_content(quick_xml::XmlVersion::default())
                    .map_err(|e| fail(&reader, format!("Bad CDATA: {e}")))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&decoded);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .map(String::from)
                } else {
                    let name: &[u8] = &reference;
                    match name {
                        b"amp" => Some("&".to_owned()),
                        b"lt" => Some("<".to_owned()),
                        b"gt" => Some(">".to_owned()),
                        b"quot" => Some("\"".to_owned()),
                        b"apos" => Some("'".to_owned()),
                        _ => None,
                    }
                };
                let Some(resolved) = resolved else {
                    return Err(fail(
                        &reader,
                        format!(
                            "Reference to undeclared entity '{}'.",
                            String::from_utf8_lossy(&reference)
                        ),
                    ));
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::DocType(_) => {
                return Err(fail(
                    &reader,
                    "For security reasons DTD is prohibited in this XML document.".into(),
                ));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(SchemaError {
            violation: "Unexpected end of file has occurred.".into(),
            position: Some(line_col(bytes, u64::try_from(bytes.len()).unwrap_or(0))),
        });
    }
    root.ok_or_else(|| SchemaError::new("Root element is missing."))
}

fn close(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// A parsed request envelope.
#[derive(Debug)]
pub struct Envelope {
    /// `RequestServerVersion/@Version`, when sent.
    pub version: Option<String>,
    /// The `ExchangeImpersonation/ConnectingSID` account, when the header is present
    /// (a header without exactly one account is a schema error).
    pub impersonation: Option<ConnectingSid>,
    /// The operation element inside `Body`.
    pub operation: Element,
}

/// How `ConnectingSID` names the impersonated account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectingSid {
    /// `PrincipalName`, `PrimarySmtpAddress` or `SmtpAddress`.
    Address(String),
    /// `SID`.
    Sid(String),
}

/// Server versions a request may name (`microsoft-protocols.md` §4.2; Exchange Online
/// also accepts the later names).
const VERSIONS: [&str; 8] = [
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2016",
];

fn version_known(version: &str) -> bool {
    VERSIONS.contains(&version)
        || version.strip_prefix('V').is_some_and(|rest| {
            rest.len() == 10 && rest.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        })
}

/// Reads a request body into its envelope.
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope, SchemaError> {
    let root = parse_document(bytes)?;
    if root.ns != Ns::Soap || root.name != "Envelope" {
        return Err(SchemaError::new(format!(
            "The element '{}' is not the SOAP 1.1 Envelope.",
            root.name
        )));
    }
    let mut version = None;
    let mut impersonation = None;
    if let Some(header) = root.child(Ns::Soap, "Header") {
        if let Some(rsv) = header.child(Ns::Types, "RequestServerVersion") {
            let v = rsv.attr("Version").unwrap_or_default();
            if !version_known(v) {
                return Err(SchemaError::new(format!(
                    "The 'Version' attribute is invalid - The value '{v}' is invalid according to its datatype 'http://schemas.microsoft.com/exchange/services/2006/types:ExchangeVersionType' - The Enumeration constraint failed."
                )));
            }
            version = Some(v.to_owned());
        }
        if let Some(imp) = header.child(Ns::Types, "ExchangeImpersonation") {
            let sid = imp.child(Ns::Types, "ConnectingSID").ok_or_else(|| {
                SchemaError::new(
                    "The element 'ExchangeImpersonation' has incomplete content. List of possible elements expected: 'ConnectingSID'.",
                )
            })?;
            let named: Vec<&Element> = sid
                .children
                .iter()
                .filter(|c| {
                    c.ns == Ns::Types
                        && matches!(
                            c.name.as_str(),
                            "PrincipalName" | "SID" | "PrimarySmtpAddress" | "SmtpAddress"
                        )
                })
                .collect();
            let [one] = named.as_slice() else {
                return Err(SchemaError::new(
                    "The element 'ConnectingSID' must contain exactly one of 'PrincipalName', 'SID', 'PrimarySmtpAddress', 'SmtpAddress'.",
                ));
            };
            impersonation = Some(if one.name == "SID" {
                ConnectingSid::Sid(one.text().to_owned())
            } else {
                ConnectingSid::Address(one.text().to_owned())
            });
        }
    }
    let body = root
        .child(Ns::Soap, "Body")
        .ok_or_else(|| SchemaError::new("The element 'Envelope' has no 'Body'."))?;
    let mut operations = body.children.iter();
    let operation = match (operations.next(), operations.next()) {
        (Some(op), None) => op.clone(),
        (None, _) => return Err(SchemaError::new("The SOAP Body is empty.")),
        (Some(_), Some(_)) => {
            return Err(SchemaError::new(
                "The SOAP Body must contain exactly one operation.",
            ));
        }
    };
    if operation.ns != Ns::Messages {
        return Err(SchemaError::new(format!(
            "The element '{}' is not in namespace '{MESSAGES_NS}'.",
            operation.name
        )));
    }
    Ok(Envelope {
        version,
        impersonation,
        operation,
    })
}

/// Escapes text and attribute values, replacing characters XML 1.0 cannot carry
/// (control characters from a message header, say) with U+FFFD.
pub fn esc(text: &str) -> std::borrow::Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{fffe}' | '\u{ffff}'))
    };
    if text.chars().all(allowed) {
        return quick_xml::escape::escape(text);
    }
    let cleaned: String = text
        .chars()
        .map(|c| if allowed(c) { c } else { '\u{fffd}' })
        .collect();
    std::borrow::Cow::Owned(quick_xml::escape::escape(cleaned.as_str()).into_owned())
}

/// The `ServerVersionInfo` header Exchange Online sends.
const SERVER_VERSION_INFO: &str = r#"<h:ServerVersionInfo MajorVersion="15" MinorVersion="20" MajorBuildNumber="8769" MinorBuildNumber="25" Version="V2018_01_08" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" xmlns="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>"#;

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

/// A successful answer: `inner` is the operation's `m:…Response` element.
pub fn response(inner: &str) -> Response {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP_NS}"><s:Header>{SERVER_VERSION_INFO}</s:Header><s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">{inner}</s:Body></s:Envelope>"#
    );
    xml_response(StatusCode::OK, body)
}

/// A request-level failure, answered as a SOAP fault (HTTP 500 unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: &'static str,
    pub message: String,
    /// `MessageXml` `Value` pairs (`BackOffMilliseconds`, ...).
    pub values: Vec<(&'static str, String)>,
    /// `ErrorSchemaValidation` details.
    pub schema: Option<SchemaError>,
    pub status: StatusCode,
}

impl Fault {
    /// A fault with Exchange's text for `code`.
    pub fn new(code: &'static str) -> Self {
        Self {
            code,
            message: message_text(code).to_owned(),
            values: Vec::new(),
            schema: None,
            status: StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A fault with its own text.
    pub fn with_message(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::new(code)
        }
    }

    /// `ErrorSchemaValidation` for a request that is not valid.
    pub fn schema(error: SchemaError) -> Self {
        Self {
            message: format!("The request failed schema validation: {}", error.violation),
            schema: Some(error),
            ..Self::new("ErrorSchemaValidation")
        }
    }

    /// `ErrorServerBusy` with the back-off hint.
    pub fn server_busy(backoff_ms: u64) -> Self {
        Self {
            values: vec![("BackOffMilliseconds", backoff_ms.to_string())],
            ..Self::new("ErrorServerBusy")
        }
    }

    /// The fault envelope as Exchange writes it.
    pub fn body(&self) -> String {
        let code = self.code;
        let message = esc(&self.message);
        let mut detail = format!(
            r#"<e:ResponseCode xmlns:e="{ERRORS_NS}">{code}</e:ResponseCode><e:Message xmlns:e="{ERRORS_NS}">{message}</e:Message>"#
        );
        if let Some(schema) = &self.schema {
            detail = format!(
                r#"<e:ResponseCode xmlns:e="{ERRORS_NS}">{code}</e:ResponseCode><e:Message xmlns:e="{ERRORS_NS}">The request failed schema validation.</e:Message>"#
            );
            let _ = write!(detail, r#"<t:MessageXml xmlns:t="{TYPES_NS}">"#);
            if let Some((line, col)) = schema.position {
                let _ = write!(
                    detail,
                    "<t:LineNumber>{line}</t:LineNumber><t:LinePosition>{col}</t:LinePosition>"
                );
            }
            let _ = write!(
                detail,
                "<t:Violation>{}</t:Violation></t:MessageXml>",
                esc(&schema.violation)
            );
        } else if !self.values.is_empty() {
            let _ = write!(detail, r#"<t:MessageXml xmlns:t="{TYPES_NS}">"#);
            for (name, value) in &self.values {
                let _ = write!(detail, r#"<t:Value Name="{name}">{}</t:Value>"#, esc(value));
            }
            detail.push_str("</t:MessageXml>");
        }
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP_NS}"><s:Body><s:Fault><faultcode xmlns:a="{TYPES_NS}">a:{code}</faultcode><faultstring xml:lang="en-US">{message}</faultstring><detail>{detail}</detail></s:Fault></s:Body></s:Envelope>"#
        )
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        xml_response(self.status, self.body())
    }
}

/// Exchange's `MessageText` / `faultstring` for a response code (§4.7).
pub fn message_text(code: &str) -> &'static str {
    match code {
        "ErrorNonExistentMailbox" => "The SMTP address has no mailbox associated with it.",
        "ErrorImpersonateUserDenied" => {
            "The account does not have permission to impersonate the requested user."
        }
        "ErrorAccessDenied" => "Access is denied. Check credentials and try again.",
        "ErrorInvalidExchangeImpersonationHeaderData" => {
            "ExchangeImpersonation SOAP header must be present for this type of OAuth token."
        }
        "ErrorMissingEmailAddress" => {
            "When making a request as an account that does not have a mailbox, you must specify the mailbox primary SMTP address for any distinguished folder Ids."
        }
        "ErrorServerBusy" => "The server cannot service this request right now. Try again later.",
        "ErrorInvalidIdMalformed" => "Id is malformed.",
        "ErrorItemNotFound" => "The specified object was not found in the store.",
        "ErrorFolderNotFound" => "The specified folder could not be found in the store.",
        "ErrorSendAsDenied" => {
            "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."
        }
        "ErrorInvalidSyncStateData" => {
            "Synchronization state data is corrupt or otherwise invalid."
        }
        "ErrorInvalidOperation" => "The operation is not valid.",
        "ErrorInvalidRequest" => "The request is invalid.",
        "ErrorInvalidPropertyRequest" => "The property request is invalid.",
        "ErrorInvalidRecipients" => "At least one recipient isn't valid.",
        "ErrorMessageSizeExceeded" => "The message exceeds the maximum supported size.",
        "ErrorNoRespondingCASInDestinationSite" => {
            "Exchange Web Services are not currently available for this request because none of the Client Access Servers in the destination site could process the request."
        }
        "ErrorInternalServerError" => "An internal server error occurred. The operation failed.",
        _ => "The request failed.",
    }
}

/// One `m:…ResponseMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub code: &'static str,
    pub message: String,
}

impl ItemError {
    /// An error with Exchange's text.
    pub fn new(code: &'static str) -> Self {
        Self {
            code,
            message: message_text(code).to_owned(),
        }
    }
}

/// A success response message: `<m:{op}ResponseMessage ResponseClass="Success">…`.
pub fn success_message(op: &str, inner: &str) -> String {
    format!(
        r#"<m:{op}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{op}ResponseMessage>"#
    )
}

/// An error response message; `empty` is what follows (`<m:Items />` for item
/// operations).
pub fn error_message(op: &str, error: &ItemError, empty: &str) -> String {
    format!(
        r#"<m:{op}ResponseMessage ResponseClass="Error"><m:MessageText>{}</m:MessageText><m:ResponseCode>{}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{empty}</m:{op}ResponseMessage>"#,
        esc(&error.message),
        error.code
    )
}

/// Wraps response messages in `<m:{op}Response><m:ResponseMessages>`.
pub fn operation_response(op: &str, messages: &str) -> String {
    format!(
        r#"<m:{op}Response xmlns:m="{MESSAGES_NS}" xmlns:t="{TYPES_NS}"><m:ResponseMessages>{messages}</m:ResponseMessages></m:{op}Response>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIND: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
               xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header>
    <t:RequestServerVersion Version="Exchange2013_SP1" />
    <t:ExchangeImpersonation>
      <t:ConnectingSID>
        <t:PrimarySmtpAddress>alice@contoso.com</t:PrimarySmtpAddress>
      </t:ConnectingSID>
    </t:ExchangeImpersonation>
  </soap:Header>
  <soap:Body>
    <m:FindItem Traversal="Shallow">
      <m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>
      <m:ParentFolderIds><t:DistinguishedFolderId Id="inbox" /></m:ParentFolderIds>
    </m:FindItem>
  </soap:Body>
</soap:Envelope>"#;

    #[test]
    fn reads_the_notes_envelope() {
        let env = parse_envelope(FIND.as_bytes()).unwrap();
        assert_eq!(env.version.as_deref(), Some("Exchange2013_SP1"));
        assert_eq!(
            env.impersonation,
            Some(ConnectingSid::Address("alice@contoso.com".into()))
        );
        assert_eq!(env.operation.name, "FindItem");
        assert_eq!(env.operation.attr("Traversal"), Some("Shallow"));
        let folder = env
            .operation
            .child(Ns::Messages, "ParentFolderIds")
            .and_then(|p| p.child(Ns::Types, "DistinguishedFolderId"))
            .unwrap();
        assert_eq!(folder.attr("Id"), Some("inbox"));
        assert!(folder.children.is_empty());
    }

    #[test]
    fn default_namespaces_and_other_prefixes_read_the_same() {
        let text = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetItem xmlns="http://schemas.microsoft.com/exchange/services/2006/messages"><ItemShape><BaseShape xmlns="http://schemas.microsoft.com/exchange/services/2006/types">IdOnly</BaseShape></ItemShape></GetItem></s:Body></s:Envelope>"#;
        let env = parse_envelope(text.as_bytes()).unwrap();
        assert_eq!(env.operation.name, "GetItem");
        let shape = env.operation.child(Ns::Messages, "ItemShape").unwrap();
        assert_eq!(shape.child_text(Ns::Types, "BaseShape"), Some("IdOnly"));
        // The same element in the wrong namespace is not found.
        assert!(shape.child(Ns::Messages, "BaseShape").is_none());
    }

    #[test]
    fn entities_and_cdata_are_text() {
        let root = parse_document(b"<a>x &amp; &#x41;<![CDATA[<b>]]></a>").unwrap();
        assert_eq!(root.text, "x & A<b>");
    }

    #[test]
    fn hostile_documents_are_schema_errors() {
        for doc in [
            &b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>"[..],
            b"<a>&x;</a>",
            b"<a><b></a>",
            b"<a>",
            b"",
            b"<a/><b/>",
            b"<p:a/>",
            b"<a x='1' x='2'/>",
        ] {
            assert!(
                parse_document(doc).is_err(),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        let deep = "<a>".repeat(200);
        assert!(parse_document(deep.as_bytes()).is_err());
    }

    #[test]
    fn wrong_version_is_a_schema_error() {
        let text = FIND.replace("Exchange2013_SP1", "Exchange1999");
        let err = parse_envelope(text.as_bytes()).unwrap_err();
        assert!(err.violation.contains("Exchange1999"), "{err}");
    }

    #[test]
    fn fault_matches_the_notes() {
        let body = Fault::new("ErrorNonExistentMailbox").body();
        assert!(body.contains(r#"<faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorNonExistentMailbox</faultcode><faultstring xml:lang="en-US">The SMTP address has no mailbox associated with it.</faultstring><detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorNonExistentMailbox</e:ResponseCode>"#), "{body}");
        let busy = Fault::server_busy(297_749).body();
        assert!(busy.contains(r#"<t:Value Name="BackOffMilliseconds">297749</t:Value>"#));
        // The answer itself parses.
        parse_document(busy.as_bytes()).unwrap();
    }

    #[test]
    fn escaping_drops_characters_xml_cannot_carry() {
        assert_eq!(esc("a\u{1}b<\t"), "a\u{fffd}b&lt;\t");
        let fault = Fault::schema(SchemaError::new("'\0' is an undeclared prefix.")).body();
        assert!(!fault.contains('\0'));
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let text = format!("\u{feff}{FIND}");
        assert_eq!(
            parse_envelope(text.as_bytes()).unwrap().operation.name,
            "FindItem"
        );
    }

    /// The fault for a refused request is itself well-formed XML without characters
    /// XML 1.0 forbids.
    fn fault_parses(err: SchemaError) {
        let body = Fault::schema(err).body();
        assert!(
            !body
                .chars()
                .any(|c| c < ' ' && !matches!(c, '\t' | '\n' | '\r')),
            "{body:?}"
        );
        let root = parse_document(body.as_bytes()).unwrap();
        assert_eq!(root.name, "Envelope");
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Err(e) = parse_envelope(&bytes) {
                fault_parses(e);
            }
        }

        #[test]
        fn random_text_never_panics(text in "[<>/a-z:=\"' &;#x0-9!\\[\\]-]{0,300}") {
            if let Err(e) = parse_envelope(text.as_bytes()) {
                fault_parses(e);
            }
        }

        #[test]
        fn truncated_envelopes_are_faults(cut in 0usize..FIND.len()) {
            let r = parse_envelope(FIND.as_bytes().get(..cut).unwrap_or_default());
            proptest::prop_assert!(r.is_err());
            if let Err(e) = r {
                fault_parses(e);
            }
        }
    }
}
