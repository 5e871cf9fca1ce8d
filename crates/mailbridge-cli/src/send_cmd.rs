//! `mailbridge send`: send a message (or a raw MIME file) from an account over its
//! outgoing transport (SMTP, Graph or EWS), and print what was sent.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use mailbridge_mailbox::compose::{Address, Attachment, Message};
use mailbridge_mailbox::mailbox::MailboxError;
use mailbridge_mailbox::send::{AnySender, Outgoing, RawMime, Sender as _, Sent};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::{AccountConfig, Transport};

use crate::context::{self, GlobalArgs};

/// `mailbridge send ...`
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The account (name or address) to send from.
    #[arg(long)]
    account: String,
    /// Recipient, `addr` or `Name <addr>` (repeat for more).
    #[arg(long, num_args = 1.., required_unless_present = "mime")]
    to: Vec<String>,
    #[arg(long, num_args = 1..)]
    cc: Vec<String>,
    /// Blind copy: in the SMTP envelope only, never in the header recipients see.
    #[arg(long, num_args = 1..)]
    bcc: Vec<String>,
    #[arg(long, num_args = 1.., conflicts_with = "mime")]
    reply_to: Vec<String>,
    #[arg(long, required_unless_present = "mime", conflicts_with = "mime")]
    subject: Option<String>,
    /// Plain-text body.
    #[arg(long, conflicts_with_all = ["text_file", "mime"])]
    text: Option<String>,
    /// Plain-text body from a file (UTF-8).
    #[arg(long, conflicts_with = "mime")]
    text_file: Option<PathBuf>,
    /// HTML body. With --text too, both go out as alternatives over SMTP and EWS;
    /// a Graph draft (a message over 3 MB, or an attachment of 3 MB or more) carries
    /// one body, the HTML.
    #[arg(long, conflicts_with_all = ["html_file", "mime"])]
    html: Option<String>,
    /// HTML body from a file (UTF-8).
    #[arg(long, conflicts_with = "mime")]
    html_file: Option<PathBuf>,
    /// A file to attach (repeat for more); streamed, never read whole.
    #[arg(long, conflicts_with = "mime")]
    attach: Vec<PathBuf>,
    /// Extra header `Name: value` (repeat for more).
    #[arg(long, conflicts_with = "mime")]
    header: Vec<String>,
    /// Sender, `addr` or `Name <addr>`: the account's address (default) or one it may
    /// send as (the server decides).
    #[arg(long, conflicts_with = "mime")]
    from: Option<String>,
    /// Send this MIME file (.eml) as it is instead of composing one. Over SMTP,
    /// --to/--cc/--bcc replace the header's recipients in the envelope. Over Graph, a
    /// file over 3 MB becomes a draft: its addresses, subject, X- header fields, one
    /// body (the HTML if it has one) and attachments are kept; other header fields
    /// (In-Reply-To, References, ...) are not: send such a message over SMTP.
    #[arg(long)]
    mime: Option<PathBuf>,
    /// Queue the message in the durable outbox instead of sending it now (prints its
    /// id); `mailbridge outbox send-pending` (or the daemon) sends it, retrying
    /// passing failures.
    #[arg(long)]
    queue: bool,
    /// With --queue: queuing the same key again for the account returns the message
    /// queued first instead of queuing another.
    #[arg(long, requires = "queue")]
    idempotency_key: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `Name <addr>` or `addr`.
fn parse_address(text: &str) -> Address {
    let text = text.trim();
    match text.rsplit_once('<') {
        Some((name, rest)) if rest.ends_with('>') => {
            let address = rest.trim_end_matches('>').trim().to_owned();
            let name = name.trim().trim_matches('"').trim();
            if name.is_empty() {
                Address::new(address)
            } else {
                Address::with_name(address, name)
            }
        }
        _ => Address::new(text),
    }
}

fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))
}

fn compose(args: &SendArgs, account: &AccountConfig) -> anyhow::Result<Message> {
    let from =
        mailbridge_mailbox::connect::sender(account, args.from.as_deref().map(parse_address));
    let mut m = Message::new(from);
    m.to = args.to.iter().map(|a| parse_address(a)).collect();
    m.cc = args.cc.iter().map(|a| parse_address(a)).collect();
    m.bcc = args.bcc.iter().map(|a| parse_address(a)).collect();
    m.reply_to = args.reply_to.iter().map(|a| parse_address(a)).collect();
    m.subject = args.subject.clone().unwrap_or_default();
    m.text = match (&args.text, &args.text_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(p)) => Some(read_text(p)?),
        (None, None) => None,
    };
    m.html = match (&args.html, &args.html_file) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(p)) => Some(read_text(p)?),
        (None, None) => None,
    };
    for path in &args.attach {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot attach {}: no such file", path.display()))?;
        if !meta.is_file() {
            bail!("cannot attach {}: it is not a file", path.display());
        }
        m.attachments.push(Attachment::from_file(path));
    }
    for h in &args.header {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header {h:?} is not `Name: value`");
        };
        m.headers
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(m)
}

/// What to do about a failed send, by its class.
fn next_step(account: &str, e: &MailboxError) -> String {
    match e.class {
        ErrorClass::Transient => "retry later".to_owned(),
        ErrorClass::Throttled { retry_after } => match retry_after {
            Some(d) => format!("the server is throttling: retry after {} s", d.as_secs()),
            None => "the server is throttling: retry in a few minutes".to_owned(),
        },
        ErrorClass::NeedsSignIn => format!("sign in again: `mailbridge auth login {account}`"),
        ErrorClass::NeedsAdmin => "an administrator must act in the tenant (see above)".to_owned(),
        ErrorClass::Misconfigured => "fix the account's configuration (see above)".to_owned(),
        _ => "the message will not go through as it is: change it (see above)".to_owned(),
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Smtp => "SMTP",
        Transport::Graph => "Microsoft Graph",
        Transport::Ews => "EWS",
        Transport::Imap => "IMAP",
        Transport::Pop3 => "POP3",
    }
}

fn print_sent(account: &AccountConfig, sent: &Sent, json: bool) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(sent)?;
        v["account"] = serde_json::Value::String(account.name.clone());
        println!("{}", crate::output::json_pretty(&v)?);
        return Ok(());
    }
    println!(
        "sent from {} over {} ({}): Message-ID <{}>, {} bytes, {} recipient(s)",
        account.address,
        transport_name(sent.transport),
        sent.route,
        mailbridge_types::printable(
            sent.message_id
                .as_deref()
                .unwrap_or("assigned by the server")
        ),
        sent.size,
        sent.recipients
    );
    if let Some(reply) = &sent.server_reply {
        println!("server: {}", mailbridge_types::printable(reply));
    }
    for note in &sent.notes {
        println!("note: {}", mailbridge_types::printable(note));
    }
    Ok(())
}

/// The envelope recipients given for a MIME file (--to, --cc, --bcc).
fn envelope(args: &SendArgs) -> Vec<String> {
    args.to
        .iter()
        .chain(&args.cc)
        .chain(&args.bcc)
        .map(|a| parse_address(a).address)
        .collect()
}

/// `mailbridge send --queue`: the message's MIME into the outbox. A composed message
/// keeps its Bcc field (SMTP takes the recipients from the header and drops it, Graph
/// and EWS read it), so it goes over whichever side the account has when sent.
async fn queue(
    store: &mailbridge_store::Store,
    account: &AccountConfig,
    args: &SendArgs,
    message: Option<&Message>,
) -> anyhow::Result<()> {
    let (bytes, recipients) = match (message, &args.mime) {
        (Some(m), _) => (
            m.to_vec(mailbridge_mailbox::compose::BccHeader::Include)
                .await
                .map_err(|e| anyhow::anyhow!("the message was not queued: {e}"))?,
            Vec::new(),
        ),
        (None, Some(path)) => {
            let max = account.limits.max_message_size;
            let size = std::fs::metadata(path)
                .with_context(|| format!("failed to read the MIME file {}", path.display()))?
                .len();
            if size > max {
                bail!(
                    "the MIME file {} is {size} bytes, over account {}'s limit of {max}: send a smaller message or raise its limits.max_message_size",
                    path.display(),
                    account.name
                );
            }
            let bytes = std::fs::read(path)
                .with_context(|| format!("failed to read the MIME file {}", path.display()))?;
            // The same check as sending it now: a header that can be read.
            RawMime::from_reader(std::io::Cursor::new(bytes.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
            (bytes, envelope(args))
        }
        (None, None) => bail!("nothing to queue"),
    };
    let id = store.outbox_account_id(&account.name).await?;
    let queued = store
        .outbox_enqueue(
            mailbridge_store::NewOutboxMessage {
                account: id,
                idempotency_key: args.idempotency_key.clone(),
                message: bytes,
                mail_from: None,
                recipients,
            },
            account.limits.max_message_size,
        )
        .await
        .with_context(|| format!("failed to queue the message of account {}", account.name))?;
    if args.json {
        let v = serde_json::json!({
            "id": queued.entry.id.to_string(),
            "account": account.name,
            "state": queued.entry.state.as_str(),
            "created": queued.created,
        });
        println!("{}", crate::output::json_pretty(&v)?);
    } else if queued.created {
        println!("{}", queued.entry.id);
        eprintln!(
            "queued from {} ({} bytes): `mailbridge outbox send-pending` sends it",
            account.name, queued.entry.size
        );
    } else {
        println!("{}", queued.entry.id);
        eprintln!(
            "already queued with this idempotency key ({}): nothing new queued",
            queued.entry.state
        );
    }
    Ok(())
}

/// Runs `mailbridge send`.
pub async fn run(global: &GlobalArgs, args: SendArgs) -> anyhow::Result<()> {
    let store = context::open_store(global).await?;
    let (account, app) = context::lookup_account(global, &store, &args.account).await?;
    if !account.send {
        bail!(
            "sending is off for account {}: turn it on with `mailbridge account edit {} --send true`",
            account.name,
            account.name
        );
    }
    let Some(endpoint) = account.outgoing_side().cloned() else {
        bail!(
            "account {} has no outgoing side: set one with `mailbridge account edit {} --outgoing smtp+starttls://host` (or give it a Graph/EWS incoming side)",
            account.name,
            account.name
        );
    };
    // Everything that can be checked locally is, before signing in.
    let message = if args.mime.is_some() {
        None
    } else {
        let m = compose(&args, &account)?;
        m.validate()
            .map_err(|e| anyhow::anyhow!("the message was not sent: {e}"))?;
        Some(m)
    };
    if args.queue {
        return queue(&store, &account, &args, message.as_ref()).await;
    }
    let sign_in = context::sign_in_now(&store, &account, app.as_ref(), endpoint.transport).await?;
    // Graph app-only addresses the mailbox by its Object ID when one is set; SMTP's
    // XOAUTH2 user= is the login name: as `test send` does.
    let who = mailbridge_mailbox::connect::Identity::of(&account);
    let mut sender = AnySender::for_endpoint(&endpoint, &who, sign_in)
        .map_err(|e| anyhow::anyhow!("{} [{}]", e.detail(), e.class))?
        .with_max_message_size(account.limits.max_message_size);
    let outgoing = match (&message, &args.mime) {
        (Some(m), _) => Outgoing::Message(m),
        (None, Some(path)) => {
            let mut raw = RawMime::from_file(path)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
            let envelope = envelope(&args);
            if !envelope.is_empty() {
                raw = raw.with_recipients(envelope);
            }
            Outgoing::Mime(raw)
        }
        (None, None) => bail!("nothing to send"),
    };
    let result = sender.send(outgoing).await;
    if let AnySender::Smtp(s) = sender {
        let _ = s.close().await;
    }
    match result {
        Ok(sent) => print_sent(&account, &sent, args.json),
        Err(e) => bail!(
            "sending from account {} over {} failed [{}]: {}\nnext step: {}",
            account.name,
            transport_name(endpoint.transport),
            e.class,
            e.detail(),
            next_step(&account.name, &e)
        ),
    }
}
