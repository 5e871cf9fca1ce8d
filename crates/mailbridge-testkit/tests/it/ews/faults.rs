//! Request-level faults: schema validation, hostile XML, throttling.

use super::support::{ALICE, World, envelope, find_item, impersonation, texts};

#[tokio::test]
async fn malformed_xml_is_error_schema_validation() {
    let world = World::start().await;
    let token = world.daemon_token();
    let auth = format!("Bearer {token}");
    let full = envelope(&impersonation(ALICE), &find_item("inbox", "IdOnly", 10, 0));
    let bodies: Vec<Vec<u8>> = vec![
        full.as_bytes()[..full.len() / 2].to_vec(),
        b"<soap:Envelope>".to_vec(),
        b"\x00\xff\xfe garbage".to_vec(),
        Vec::new(),
        full.replace(
            "m:FindItem Traversal",
            "m:FindItem  Traversal=\"x\" Traversal",
        )
        .into_bytes(),
        format!("<!DOCTYPE lol [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>{full}")
            .replace("Shallow", "&b;")
            .into_bytes(),
    ];
    for body in bodies {
        let answer = world
            .post(Some(&auth), &[("X-AnchorMailbox", ALICE)], body.clone())
            .await;
        answer.assert_fault(500, "ErrorSchemaValidation");
        assert!(
            answer.body.contains(
                r#"<faultstring xml:lang="en-US">The request failed schema validation: "#
            ),
            "{}",
            answer.body
        );
    }
}

#[tokio::test]
async fn invalid_enumeration_values_are_schema_errors() {
    let world = World::start().await;
    let body = find_item("inbox", "Everything", 10, 0);
    let answer = world.as_app(ALICE, &body).await;
    answer.assert_fault(500, "ErrorSchemaValidation");
    let body = envelope(&impersonation(ALICE), &find_item("inbox", "IdOnly", 10, 0))
        .replace("Exchange2013_SP1", "Exchange2099");
    let token = world.daemon_token();
    let answer = world
        .post(
            Some(&format!("Bearer {token}")),
            &[("X-AnchorMailbox", ALICE)],
            body,
        )
        .await;
    answer.assert_fault(500, "ErrorSchemaValidation");
    assert!(answer.body.contains("Exchange2099"));
}

#[tokio::test]
async fn server_busy_carries_back_off_milliseconds_once_per_fault() {
    let world = World::start().await;
    world.emulator.update_knobs(|k| {
        k.ews_backoff_ms = 297_749;
        k.faults.ews_server_busy = 1;
    });
    let answer = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    answer.assert_fault(500, "ErrorServerBusy");
    assert!(answer.body.contains(
        r#"<faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring>"#
    ));
    assert!(
        answer.body.contains(
            r#"<t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOffMilliseconds">297749</t:Value></t:MessageXml>"#
        ),
        "{}",
        answer.body
    );
    // The fault fired once: the next request gets past throttling (and, with no mail
    // servers here, fails inside the operation instead).
    let answer = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    assert_ne!(texts(&answer.body, "ResponseCode"), vec!["ErrorServerBusy"]);
}

#[tokio::test]
async fn an_operation_the_emulator_lacks_is_said_plainly() {
    let world = World::start().await;
    let answer = world
        .as_app(
            ALICE,
            r#"<m:ResolveNames ReturnFullContactData="true"><m:UnresolvedEntry>bob</m:UnresolvedEntry></m:ResolveNames>"#,
        )
        .await;
    answer.assert_fault(500, "ErrorInvalidRequest");
    assert!(answer.body.contains("ResolveNames"));
}

#[tokio::test]
async fn restrictions_are_refused_rather_than_ignored() {
    let world = World::start().await;
    let answer = world
        .as_app(
            ALICE,
            r#"<m:FindItem Traversal="Shallow">
      <m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>
      <m:Restriction><t:IsEqualTo><t:FieldURI FieldURI="message:IsRead" /><t:FieldURIOrConstant><t:Constant Value="false" /></t:FieldURIOrConstant></t:IsEqualTo></m:Restriction>
      <m:ParentFolderIds><t:DistinguishedFolderId Id="inbox" /></m:ParentFolderIds>
    </m:FindItem>"#,
        )
        .await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    assert!(answer.body.contains(r#"ResponseClass="Error""#));
    assert_eq!(
        texts(&answer.body, "ResponseCode"),
        vec!["ErrorUnsupportedQueryFilter"]
    );
}

#[tokio::test]
async fn answers_carry_request_id_and_echo_client_request_id() {
    let world = World::start().await;
    let token = world.daemon_token();
    let answer = world
        .post(
            Some(&format!("Bearer {token}")),
            &[
                ("X-AnchorMailbox", ALICE),
                ("client-request-id", "4f1c6f0e-0000-4000-8000-000000000001"),
                ("return-client-request-id", "true"),
            ],
            envelope("", &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    assert!(answer.header("request-id").is_some());
    assert_eq!(
        answer.header("client-request-id"),
        Some("4f1c6f0e-0000-4000-8000-000000000001")
    );
}

#[tokio::test]
async fn distinguished_folder_names_are_the_schema_enumeration() {
    let world = World::start().await;
    // Case matters, as in the schema.
    let answer = world
        .as_app(ALICE, &find_item("Inbox", "IdOnly", 10, 0))
        .await;
    answer.assert_fault(500, "ErrorSchemaValidation");
    assert!(
        answer.body.contains("DistinguishedFolderIdNameType"),
        "{}",
        answer.body
    );
    // A real name the emulated store has no folder for.
    let answer = world
        .as_app(ALICE, &find_item("calendar", "IdOnly", 10, 0))
        .await;
    assert_eq!(answer.status.as_u16(), 200);
    assert_eq!(
        texts(&answer.body, "ResponseCode"),
        vec!["ErrorFolderNotFound"]
    );
}
