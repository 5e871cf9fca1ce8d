//! Test receive, live, in a real browser against the real `mailbridge serve`: the
//! account's IMAP server (scripted here) greets and then holds LOGIN until the test
//! lets it go on; meanwhile the page already shows the finished steps ✓ (and passes
//! axe-core); once released, the failed step ✗ with its fix appears on the same page
//! (the script polls the run's JSON). The run's page works without the script (its
//! Refresh link), and nobody else reads the run: no session gets 401, another person
//! 404. Saves the page to `docs/screenshots/livetest.png`.

use fantoccini::Locator;
use mailbridge_testkit::browser::screenshots_dir;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, watch};

use super::web_world::{
    Browser, DEADLINE, add_person, assert_accessible, click, click_through, element, serve,
    set_up_administrator, sign_in, text,
};

/// An IMAP server that greets, answers CAPABILITY, tells `held` when LOGIN arrives and
/// refuses it once `release` turns true.
async fn stalling_imap(held: mpsc::UnboundedSender<()>, release: watch::Receiver<bool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let held = held.clone();
            let mut release = release.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                write.write_all(b"* OK IMAP4rev1 ready\r\n").await?;
                let mut lines = BufReader::new(read).lines();
                while let Some(line) = lines.next_line().await? {
                    let mut words = line.split(' ');
                    let tag = words.next().unwrap_or("*").to_owned();
                    let command = words.next().unwrap_or_default().to_ascii_uppercase();
                    let answer = match command.as_str() {
                        "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
                        "LOGOUT" => format!("* BYE\r\n{tag} OK bye\r\n"),
                        _ => {
                            let _ = held.send(());
                            let _ = release.wait_for(|go| *go).await;
                            format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                        }
                    };
                    write.write_all(answer.as_bytes()).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    port
}

/// The steps the page lists now, as `(class, text)`.
async fn steps(driver: &fantoccini::Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for li in driver
        .find_all(Locator::Css("#test-result ol.steps li"))
        .await
        .unwrap()
    {
        let class = li.attr("class").await.unwrap().unwrap_or_default();
        out.push((class, li.text().await.unwrap()));
    }
    out
}

#[tokio::test]
async fn test_receive_shows_each_step_as_it_finishes_and_only_to_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path()).await;
    let (held_tx, mut held) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let port = stalling_imap(held_tx, released).await;
    let made = serve
        .call(
            reqwest::Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "slow", "address": "slow@example.org", "sign_in": "password",
                        "password": "Slow-pw-1",
                        "incoming": {"transport": "imap", "host": "127.0.0.1", "port": port, "tls": "none"}})),
        )
        .await;
    let id = made["id"].as_str().unwrap().to_owned();

    let browser = Browser::start("en-US,en", 1280, 900).await;
    let driver = &browser.driver;
    set_up_administrator(driver, &serve).await;
    add_person(dir.path(), "alice", "user").await;
    driver
        .goto(&format!("{}/accounts/{id}", serve.base))
        .await
        .unwrap();
    click_through(driver, "#test-receive").await;

    // The server holds LOGIN: the page shows resolve and connect ✓ while the check
    // still runs.
    tokio::time::timeout(DEADLINE, held.recv())
        .await
        .expect("the check reaches LOGIN")
        .unwrap();
    element(driver, "#test-result ol.steps li:nth-child(2)").await;
    let so_far = steps(driver).await;
    assert_eq!(so_far.len(), 2, "{so_far:?}");
    assert!(
        so_far[0].0.contains("ok") && so_far[0].1.contains("resolve"),
        "{so_far:?}"
    );
    assert!(
        so_far[1].0.contains("ok") && so_far[1].1.contains("connect+TLS"),
        "{so_far:?}"
    );
    assert!(so_far.iter().all(|(_, t)| t.contains('✓')), "{so_far:?}");
    assert_eq!(
        text(driver, "#test-summary").await,
        "Testing… Each step appears here as soon as it finishes."
    );
    let live = element(driver, "#test-result").await;
    assert_eq!(
        live.attr("aria-live").await.unwrap().as_deref(),
        Some("polite")
    );
    let run_url = element(driver, "#live-refresh a")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(
        run_url.starts_with(&format!("/accounts/{id}/test/receive/")),
        "{run_url}"
    );
    let page = driver.source().await.unwrap();
    assert!(
        !page.contains("Slow-pw-1"),
        "the password stays out of the page"
    );
    assert_accessible(driver, "a test running").await;

    // Let the server go on: the refusal ✗ and its fix arrive on the same page.
    release.send(true).unwrap();
    element(driver, "#live-test[data-done]").await;
    assert_eq!(
        text(driver, "#test-summary").await,
        "A step failed: its cause and the fix are shown beside it."
    );
    let all = steps(driver).await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all[2].0.contains("bad"), "{all:?}");
    assert!(
        all[2].1.contains("authenticate") && all[2].1.contains('✗'),
        "{all:?}"
    );
    let fix = text(driver, "#test-result li.bad .fix").await;
    assert!(fix.starts_with("Fix"), "{fix}");
    assert!(
        driver.find(Locator::Css("#live-refresh")).await.is_err(),
        "no Refresh link once done"
    );
    assert_accessible(driver, "a test ended").await;
    let png = driver.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshots_dir().unwrap().join("livetest.png"), png).unwrap();

    // Without the script, the run's address shows the same steps.
    driver
        .goto(&format!("{}{run_url}", serve.base))
        .await
        .unwrap();
    let again = steps(driver).await;
    assert_eq!(again, all);

    // Nobody else reads the run: no session (JSON) -> 401; Alice -> 404.
    let anonymous = reqwest::Client::new()
        .get(format!("{}{run_url}", serve.base))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    click(driver, ".signout button").await;
    element(driver, "#signin-submit").await;
    sign_in(driver, &serve.base, "alice").await;
    driver
        .goto(&format!("{}{run_url}", serve.base))
        .await
        .unwrap();
    let message = text(driver, "#message").await;
    assert!(!message.is_empty());
    let page = driver.source().await.unwrap();
    assert!(!page.contains("connect+TLS"), "{page}");
    let status: serde_json::Value = driver
        .execute_async(
            r"const done = arguments[arguments.length - 1];
            fetch(arguments[0], { headers: { Accept: 'application/json' } })
              .then(r => done(r.status)).catch(e => done(String(e)));",
            vec![json!(run_url)],
        )
        .await
        .unwrap();
    assert!(status == json!(404) || status == json!(403), "{status}");
    browser.quit().await;
    serve.stop().await;
}
