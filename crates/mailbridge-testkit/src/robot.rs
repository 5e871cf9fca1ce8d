//! A scripted person at a browser: signs in through the emulator's own HTML pages
//! (sign-in, MFA, consent, device-code entry and confirmation) over real HTTP, the way
//! a user would, so that client code can be tested end to end without a browser.
//!
//! The page reader understands the emulator's pages only (one `<form>` per page,
//! hidden inputs carrying the flow id); it is test tooling, not an HTML parser.

use url::Url;

/// What the person does on each page.
#[derive(Debug, Clone)]
pub struct Person {
    pub upn: String,
    pub password: String,
    /// The code to enter on the MFA page.
    pub mfa_code: Option<String>,
    /// Press Accept (true) or Cancel (false) on consent and confirmation pages.
    pub consent: bool,
}

/// Where the person ended.
#[derive(Debug, Clone)]
pub struct FinalPage {
    /// The last URL requested (for a redirect out of the emulator: the target).
    pub url: String,
    pub status: u16,
    pub body: String,
}

/// The robot could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RobotError {
    #[error("HTTP request to {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("page has no form the robot understands (status {status}): {body}")]
    Stuck { status: u16, body: String },
    #[error("more than 20 steps without reaching the end")]
    TooManySteps,
}

impl Person {
    /// A person with this user name and password who accepts consent.
    pub fn new(upn: &str, password: &str) -> Self {
        Self {
            upn: upn.to_owned(),
            password: password.to_owned(),
            mfa_code: None,
            consent: true,
        }
    }

    fn browser() -> Result<reqwest::Client, RobotError> {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| RobotError::Http {
                url: String::new(),
                source,
            })
    }

    /// Opens an `/authorize` (or `/adminconsent`) URL and goes through the pages until
    /// the emulator redirects out of itself; then requests that URL too (as a browser
    /// does, reaching e.g. a loopback listener) and returns what it answered. A
    /// redirect to a host nothing listens on ends with that URL and status 0.
    pub async fn authorize(&self, url: &str) -> Result<FinalPage, RobotError> {
        let client = Self::browser()?;
        let origin = origin(url);
        self.walk(&client, &origin, Request::Get(url.to_owned()), None)
            .await
    }

    /// Enters `user_code` at the device-login page and signs in.
    pub async fn device_login(
        &self,
        verification_uri: &str,
        user_code: &str,
    ) -> Result<FinalPage, RobotError> {
        let client = Self::browser()?;
        let origin = origin(verification_uri);
        self.walk(
            &client,
            &origin,
            Request::Get(verification_uri.to_owned()),
            Some(user_code),
        )
        .await
    }

    async fn walk(
        &self,
        client: &reqwest::Client,
        origin: &str,
        mut next: Request,
        user_code: Option<&str>,
    ) -> Result<FinalPage, RobotError> {
        for _ in 0..20 {
            let url = next.url().to_owned();
            let response = match &next {
                Request::Get(u) => client.get(u).send().await,
                Request::Post(u, fields) => client.post(u).form(fields).send().await,
            };
            let response = match response {
                Ok(r) => r,
                Err(source) if !url.starts_with(origin) => {
                    // Redirected to a host nothing listens on (paste-the-URL flows).
                    let _ = source;
                    return Ok(FinalPage {
                        url,
                        status: 0,
                        body: String::new(),
                    });
                }
                Err(source) => return Err(RobotError::Http { url, source }),
            };
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let target = Url::parse(&url)
                    .and_then(|base| base.join(&location))
                    .map_or(location, |u| u.to_string());
                next = Request::Get(target);
                continue;
            }
            let body = response.text().await.map_err(|source| RobotError::Http {
                url: url.clone(),
                source,
            })?;
            if !url.starts_with(origin) {
                return Ok(FinalPage { url, status, body });
            }
            let Some(form) = Form::read(&body) else {
                return Ok(FinalPage { url, status, body });
            };
            let mut fields = form.hidden;
            let action = form.action.clone();
            if action.ends_with("/login/signin") {
                fields.push(("login".into(), self.upn.clone()));
                fields.push(("passwd".into(), self.password.clone()));
            } else if action.ends_with("/login/mfa") {
                fields.push(("otc".into(), self.mfa_code.clone().unwrap_or_default()));
            } else if action.ends_with("/login/consent") || action.ends_with("/login/confirm") {
                fields.push(("accept".into(), self.consent.to_string()));
            } else if action.ends_with("/devicelogin") {
                fields.push(("otc".into(), user_code.unwrap_or_default().to_owned()));
            } else if form.hidden_only {
                // form_post: an auto-submitting form back to the app.
            } else {
                return Err(RobotError::Stuck { status, body });
            }
            let target = Url::parse(&url)
                .and_then(|base| base.join(&action))
                .map_or(action, |u| u.to_string());
            next = Request::Post(target, fields);
        }
        Err(RobotError::TooManySteps)
    }
}

enum Request {
    Get(String),
    Post(String, Vec<(String, String)>),
}

impl Request {
    fn url(&self) -> &str {
        match self {
            Request::Get(u) | Request::Post(u, _) => u,
        }
    }
}

fn origin(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.origin().ascii_serialization())
}

struct Form {
    action: String,
    hidden: Vec<(String, String)>,
    hidden_only: bool,
}

impl Form {
    fn read(html: &str) -> Option<Self> {
        let start = html.find("<form")?;
        let end = start + html.get(start..)?.find("</form>")?;
        let body = html.get(start..end)?;
        let open_end = body.find('>')?;
        let action = attr(body.get(..open_end)?, "action")?;
        let mut hidden = Vec::new();
        let mut visible = 0;
        let mut rest = body;
        while let Some(i) = rest.find("<input") {
            let tag_end = i + rest.get(i..)?.find('>')?;
            let tag = rest.get(i..tag_end)?;
            if tag.contains("type=\"hidden\"") {
                if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                    hidden.push((n, v));
                }
            } else {
                visible += 1;
            }
            rest = rest.get(tag_end..)?;
        }
        let buttons = body.matches("<button").count();
        Some(Self {
            action,
            hidden,
            hidden_only: visible == 0 && buttons <= 1,
        })
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = start + tag.get(start..)?.find('"')?;
    Some(
        tag.get(start..end)?
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}
