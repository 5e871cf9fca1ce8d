//! A bounded element tree from an XML document.

use quick_xml::events::Event;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted.
pub const MAX_ELEMENTS: usize = 200_000;

/// An element: local name (prefix dropped), attributes, text, children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

/// The document is not XML mailbridge accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct XmlError(pub String);

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    s.rsplit(':').next().unwrap_or_default().to_owned()
}

/// Parses a document into its root element.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    let mut root = None;
    loop {
        let event = reader.read_event().map_err(|e| XmlError(e.to_string()))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_none() => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(XmlError("document too large or too deep".into()));
                }
                let mut el = Element {
                    name: local(e.name().as_ref()),
                    ..Element::default()
                };
                for a in e.attributes().flatten() {
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::default())
                        .map_err(|e| XmlError(e.to_string()))?
                        .into_owned();
                    el.attributes.push((local(a.key.as_ref()), value));
                }
                if empty {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .push_str(&t.decode().map_err(|e| XmlError(e.to_string()))?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    // `&#60;`, `&#x1F600;`: the character (never NUL, a surrogate or
                    // past U+10FFFF).
                    if let Some(c) = r.resolve_char_ref().map_err(|e| XmlError(e.to_string()))? {
                        top.text.push(c);
                        continue;
                    }
                    let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                    let ch = match name.as_str() {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => return Err(XmlError(format!("unknown entity &{name};"))),
                    };
                    top.text.push_str(ch);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::End(_) => {
                let Some(mut done) = stack.pop() else {
                    return Err(XmlError("unbalanced end tag".into()));
                };
                let trimmed = std::mem::take(&mut done.text);
                trimmed.trim().clone_into(&mut done.text);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::DocType(_) => return Err(XmlError("DTDs are not accepted".into())),
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("the document ends inside an element".into()));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first descendant (depth first) named `name`.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }

    /// Every descendant named `name`.
    pub fn find_all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        for c in &self.children {
            if c.name == name {
                out.push(c);
            }
            c.find_all(name, out);
        }
    }

    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Escapes text for XML content and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_with_prefixes_attributes_and_entities() {
        let root = parse(r#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><m:R a="1 &amp; 2"><t:Text>a &lt; b</t:Text><t:E/></m:R></s:Body></s:Envelope>"#).unwrap();
        assert_eq!(root.name, "Envelope");
        let r = root.find("R").unwrap();
        assert_eq!(r.attr("a"), Some("1 & 2"));
        assert_eq!(r.child("Text").unwrap().text, "a < b");
        assert!(r.child("E").is_some());
    }

    #[test]
    fn hostile_documents_are_errors() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<!DOCTYPE x [<!ENTITY e \"x\">]><a>&e;</a>",
            "</a>",
            "<a>&unknown;</a>",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(&deep).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,400}") {
            let _ = parse(&s);
        }
    }
}
