//! Token cache benchmark: the cached-token path cost per call, and token-endpoint
//! requests for 1,000 concurrent acquisitions on a cold cache; mailbridge beside MSAL
//! for Python, both against the same emulated tenant (HTTPS, test CA) in this run.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::ClientCredential;
use mailbridge_auth::session::{AccountSignIn, Sessions, StoreFailure, TokenStore};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::model::TenantModel;
use mailbridge_testkit::{Emulator, EmulatorServer};
use secrecy::SecretString;

const CLIENT_ID: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";
const SECRET: &str = "sandbox~graph~secret~value";
const SCOPE: &str = "https://graph.microsoft.com/.default";
const CALLS: u32 = 200_000;
const PEER_CALLS: u32 = 20_000;
const CONCURRENT: usize = 1_000;

struct NoStore;

impl TokenStore for NoStore {
    async fn load_refresh_token(&self, _: &str) -> Result<Option<SecretString>, StoreFailure> {
        Ok(None)
    }
    async fn save_refresh_token(&self, _: &str, _: &SecretString) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn mark_needs_sign_in(&self, _: &str, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn mark_signed_in(&self, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ca = TestCa::generate()?;
    let server = EmulatorServer::start_https(
        Emulator::new(TenantModel::sandbox())?,
        "127.0.0.1:0".parse()?,
        &ca,
    )
    .await?;
    let base = server.base_url();
    let token_requests = || server.emulator.requests_to("/oauth2/v2.0/token").len();

    // mailbridge: 1,000 concurrent acquisitions on a cold cache.
    let client = TokenClient::new(&HttpOptions {
        extra_ca_pem: Some(ca.certificate_pem.clone()),
        timeout: None,
    })?;
    let sessions = Arc::new(Sessions::new(
        client,
        Arc::new(NoStore),
        RetryPolicy::default(),
    ));
    let sign_in = Arc::new(AccountSignIn {
        account: "bench".into(),
        app: App {
            client_id: CLIENT_ID.into(),
            credential: ClientCredential::Secret(SecretString::from(SECRET)),
        },
        authority: Authority::new(&base, TenantSegment::parse("contoso.example")?)?,
        scopes: vec![SCOPE.into()],
        delegated: false,
    });
    let before = token_requests();
    let barrier = Arc::new(tokio::sync::Barrier::new(CONCURRENT));
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (s, i, b) = (sessions.clone(), sign_in.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                s.access_token(&i).await.map(|_| ())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let ours_concurrent = token_requests() - before;

    // mailbridge: cached path.
    let start = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(sessions.access_token(&sign_in).await?);
    }
    let ours_ns = start.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS);

    // MSAL for Python against the same tenant.
    let ca_file = tempfile::NamedTempFile::new()?;
    std::fs::write(ca_file.path(), &ca.certificate_pem)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/msal_peer.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args([
            &format!("{base}/contoso.example"),
            CLIENT_ID,
            SECRET,
            SCOPE,
            &PEER_CALLS.to_string(),
            &CONCURRENT.to_string(),
        ])
        .env("REQUESTS_CA_BUNDLE", ca_file.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("failed to start python3 (bench/run installs msal)")?;
    let before = token_requests();
    let mut out = BufReader::new(child.stdout.take().context("no stdout")?);
    let mut line = String::new();
    // The Python side runs blocking; read it off the runtime.
    let (first, mut out) = tokio::task::spawn_blocking(move || {
        let r = out.read_line(&mut line).map(|_| line.clone());
        (r, out)
    })
    .await?;
    let first = first?;
    if !first.contains("concurrent-done") {
        bail!("MSAL peer failed: {first}");
    }
    let peer_concurrent = token_requests() - before;
    writeln!(child.stdin.as_mut().context("no stdin")?)?;
    let second = tokio::task::spawn_blocking(move || {
        let mut l = String::new();
        out.read_line(&mut l).map(|_| l)
    })
    .await??;
    let v: serde_json::Value = serde_json::from_str(&second).context("MSAL peer output")?;
    let peer_ns = v["cached_us"].as_f64().context("no cached_us")? * 1000.0;
    let _ = child.wait();
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(10)).await;

    println!("token cache (emulated tenant over HTTPS, client credentials, Graph .default)");
    println!(
        "{:<44} {:>14} {:>14} {:>9}",
        "", "mailbridge", "MSAL Python", "ratio"
    );
    println!(
        "{:<44} {:>11.0} ns {:>11.0} ns {:>8.1}x",
        "cached token, cost per call",
        ours_ns,
        peer_ns,
        peer_ns / ours_ns
    );
    println!(
        "{:<44} {:>14} {:>14}",
        format!("token requests for {CONCURRENT} concurrent callers"),
        ours_concurrent,
        peer_concurrent
    );
    if ours_concurrent != 1 {
        bail!("single flight broken: {ours_concurrent} token requests for {CONCURRENT} callers");
    }
    Ok(())
}
