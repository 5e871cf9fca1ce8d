//! `mailbridge test receive|send <account>`: check an account's incoming or outgoing
//! side step by step, naming the cause and the fix of a failure.

use anyhow::bail;
use mailbridge_accounts::check::{
    Identity, Report, SignIn, TokenFailure, receive_ews, receive_graph, receive_imap, receive_pop3,
    send_ews, send_graph, send_smtp,
};
use mailbridge_types::config::{SignInMethod, Transport};
use secrecy::SecretString;

use crate::context::{self, GlobalArgs};

/// `mailbridge test ...`
#[derive(Debug, clap::Subcommand)]
pub enum TestCommand {
    /// Sign in to the incoming side (IMAP, POP3, Graph or EWS), open the inbox and read
    /// one message's header.
    Receive {
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Sign in to the outgoing side (SMTP, Graph or EWS) and send a test message.
    Send {
        account: String,
        /// Recipient (the account itself when absent).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs a test command; fails (exit 1) when the check fails.
pub async fn run(global: &GlobalArgs, command: TestCommand) -> anyhow::Result<()> {
    let store = context::open_store(global).await?;
    let config = context::catalog(global, &store).await?;
    let (name, json, receive, to) = match &command {
        TestCommand::Receive { account, json } => (account, *json, true, None),
        TestCommand::Send { account, to, json } => (account, *json, false, to.clone()),
    };
    let Some(account) = config.account(name) else {
        bail!("no account named {name:?} in the configuration");
    };
    // The side `fetch` and `send` use, and the identity they sign in and address the
    // mailbox with.
    let side = if receive {
        account.incoming_side().cloned()
    } else {
        account.outgoing_side().cloned()
    };
    let Some(endpoint) = side else {
        bail!(
            "account {} has no {} side in force ([account.{}] in the configuration, and {} turned on)",
            account.name,
            if receive { "incoming" } else { "outgoing" },
            if receive { "incoming" } else { "outgoing" },
            if receive { "download" } else { "send" }
        );
    };
    let who = Identity::of(account);
    let report = match account.sign_in {
        SignInMethod::Password => {
            let Some(password) = store.get_secret(&account.password_id()).await? else {
                bail!("account {} has no password stored", account.name);
            };
            let sign_in =
                SignIn::<fn() -> std::future::Ready<Result<SecretString, String>>>::Password {
                    user: who.login.clone(),
                    password,
                };
            check(receive, &endpoint, &who, to.as_deref(), sign_in).await?
        }
        SignInMethod::Delegated | SignInMethod::AppOnly => {
            let (_, app) = context::account_and_app(&config, &account.name)?;
            let sign_in_spec =
                context::account_sign_in(account, app, &store, endpoint.transport).await?;
            let grant = context::grant(account)?;
            let sessions = context::sign_in(&store).sessions(app)?;
            let get = || async move {
                sessions
                    .access_token(&sign_in_spec)
                    .await
                    .map_err(TokenFailure::from)
            };
            check(
                receive,
                &endpoint,
                &who,
                to.as_deref(),
                SignIn::Token { grant, get },
            )
            .await?
        }
    };
    if json {
        // Escaped as JSON: the values stay exactly the server's words.
        println!("{}", crate::output::json_pretty(&report)?);
    } else {
        print!("{}", printable_report(&report).render());
    }
    if report.ok {
        Ok(())
    } else {
        bail!(
            "the {} check of account {} failed (see the fix above)",
            if receive { "receive" } else { "send" },
            account.name
        )
    }
}

/// The report with every server-provided text made printable: a reply that carries
/// escape sequences cannot recolour, clear or retitle the terminal, nor fake a line.
fn printable_report(report: &Report) -> Report {
    let mut out = report.clone();
    for step in &mut out.steps {
        step.detail = mailbridge_types::printable(&step.detail).into_owned();
        step.fix = step
            .fix
            .as_deref()
            .map(|f| mailbridge_types::printable(f).into_owned());
    }
    out
}

async fn check<F, Fut, E>(
    receive: bool,
    endpoint: &mailbridge_types::config::EndpointConfig,
    who: &Identity,
    to: Option<&str>,
    sign_in: SignIn<F>,
) -> anyhow::Result<Report>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<SecretString, E>>,
    E: Into<TokenFailure>,
{
    let to = to.unwrap_or(&who.address);
    Ok(match (receive, endpoint.transport) {
        (true, Transport::Imap) => receive_imap(endpoint, who, sign_in).await,
        (true, Transport::Pop3) => receive_pop3(endpoint, who, sign_in).await,
        (true, Transport::Graph) => receive_graph(endpoint, who, sign_in).await,
        (true, Transport::Ews) => receive_ews(endpoint, who, sign_in).await,
        (false, Transport::Smtp) => send_smtp(endpoint, who, to, sign_in).await,
        (false, Transport::Graph) => send_graph(endpoint, who, to, sign_in).await,
        (false, Transport::Ews) => send_ews(endpoint, who, to, sign_in).await,
        (true, Transport::Smtp) => bail!(
            "the account's incoming side is SMTP, which only sends: set [account.incoming] to imap, pop3, graph or ews"
        ),
        (false, t @ (Transport::Imap | Transport::Pop3)) => bail!(
            "the account's outgoing side is {t:?}, which only receives: set [account.outgoing] to smtp (or use graph or ews)"
        ),
    })
}
