//! EWS operations end to end against real Dovecot and Postfix: FindItem, GetItem with
//! MIME, UpdateItem, MoveItem, DeleteItem, CreateItem (send and save), SyncFolderItems,
//! and who may open which mailbox.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_testkit::model::{AccessPolicyMode, MailboxPermission, MailboxRight};

use super::support::{
    ALICE, Answer, BOB, FRANK, FRANK_PASSWORD, World, attrs, envelope, find_item, impersonation,
    texts,
};

/// A message as a client would upload it.
fn mime(subject: &str, body: &str) -> String {
    format!(
        "From: Bob Berg <{BOB}>\r\nTo: Alice Anders <{ALICE}>\r\nSubject: {subject}\r\nDate: Tue, 14 May 2024 09:21:37 +0000\r\nMessage-ID: <{}@contoso.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.replace(' ', "-")
    )
}

/// Saves a message straight into a folder of `mailbox` (CreateItem SaveOnly with a
/// SavedItemFolderId), as a migration tool would; its ItemId.
async fn save(world: &World, mailbox: &str, folder: &str, raw: &str) -> String {
    let answer = world
        .as_app(
            mailbox,
            &format!(
                r#"<m:CreateItem MessageDisposition="SaveOnly">
      <m:SavedItemFolderId><t:DistinguishedFolderId Id="{folder}" /></m:SavedItemFolderId>
      <m:Items>
        <t:Message>
          <t:MimeContent CharacterSet="UTF-8">{}</t:MimeContent>
          <t:IsRead>false</t:IsRead>
        </t:Message>
      </m:Items>
    </m:CreateItem>"#,
                STANDARD.encode(raw)
            ),
        )
        .await;
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    assert_eq!(texts(&answer.body, "ResponseCode"), vec!["NoError"]);
    attrs(&answer.body, "ItemId", "Id").remove(0)
}

fn get_item(id: &str, mime: bool) -> String {
    format!(
        r#"<m:GetItem>
      <m:ItemShape>
        <t:BaseShape>Default</t:BaseShape>
        <t:IncludeMimeContent>{mime}</t:IncludeMimeContent>
      </m:ItemShape>
      <m:ItemIds>
        <t:ItemId Id="{id}" />
      </m:ItemIds>
    </m:GetItem>"#
    )
}

fn sync(folder: &str, state: Option<&str>, max: u32) -> String {
    let state = state.map_or(String::new(), |s| format!("<m:SyncState>{s}</m:SyncState>"));
    format!(
        r#"<m:SyncFolderItems>
      <m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>
      <m:SyncFolderId><t:DistinguishedFolderId Id="{folder}" /></m:SyncFolderId>
      {state}
      <m:MaxChangesReturned>{max}</m:MaxChangesReturned>
      <m:SyncScope>NormalItems</m:SyncScope>
    </m:SyncFolderItems>"#
    )
}

fn set_read(id: &str, read: bool) -> String {
    format!(
        r#"<m:UpdateItem MessageDisposition="SaveOnly" ConflictResolution="AlwaysOverwrite">
      <m:ItemChanges>
        <t:ItemChange>
          <t:ItemId Id="{id}" />
          <t:Updates>
            <t:SetItemField>
              <t:FieldURI FieldURI="message:IsRead" />
              <t:Message><t:IsRead>{read}</t:IsRead></t:Message>
            </t:SetItemField>
          </t:Updates>
        </t:ItemChange>
      </m:ItemChanges>
    </m:UpdateItem>"#
    )
}

fn ok(answer: &Answer) {
    assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    assert!(
        texts(&answer.body, "ResponseCode")
            .iter()
            .all(|c| c == "NoError"),
        "{}",
        answer.body
    );
}

/// Subjects in a folder (FindItem, newest first), polling until `expect` shows up
/// (delivery through Postfix is asynchronous).
async fn subjects_when(world: &World, mailbox: &str, folder: &str, expect: &str) -> Vec<String> {
    let mut last = Vec::new();
    for _ in 0..100 {
        let answer = world
            .as_app(mailbox, &find_item(folder, "IdOnly", 100, 0))
            .await;
        ok(&answer);
        last = texts(&answer.body, "Subject");
        if last.iter().any(|s| s == expect) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{expect:?} never arrived in {mailbox}/{folder}; last saw {last:?}");
}

#[tokio::test]
async fn find_get_update_move_delete_end_to_end() {
    let world = World::start_with_mail().await;
    let raws = [
        mime("First", "one"),
        mime("Second", "two"),
        mime("Third", "three"),
    ];
    let mut ids = Vec::new();
    for raw in &raws {
        ids.push(save(&world, ALICE, "inbox", raw).await);
    }

    // Paging, newest first.
    let page = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 2, 0))
        .await;
    ok(&page);
    assert_eq!(texts(&page.body, "Subject"), vec!["Third", "Second"]);
    assert_eq!(
        attrs(&page.body, "RootFolder", "TotalItemsInView"),
        vec!["3"]
    );
    assert_eq!(
        attrs(&page.body, "RootFolder", "IndexedPagingOffset"),
        vec!["2"]
    );
    assert_eq!(
        attrs(&page.body, "RootFolder", "IncludesLastItemInRange"),
        vec!["false"]
    );
    let rest = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 2, 2))
        .await;
    assert_eq!(texts(&rest.body, "Subject"), vec!["First"]);
    assert_eq!(
        attrs(&rest.body, "RootFolder", "IncludesLastItemInRange"),
        vec!["true"]
    );
    assert_eq!(texts(&rest.body, "IsRead"), vec!["false"]);
    // Ids are stable across calls.
    let again = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    let listed = attrs(&again.body, "ItemId", "Id");
    assert_eq!(listed, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    // AllProperties brings the sender along.
    let all = world
        .as_app(ALICE, &find_item("inbox", "AllProperties", 1, 0))
        .await;
    assert_eq!(texts(&all.body, "EmailAddress")[0], BOB);

    // GetItem with MIME: the exact bytes back.
    let got = world.as_app(ALICE, &get_item(&ids[0], true)).await;
    ok(&got);
    assert!(got.body.contains(r#"<t:MimeContent CharacterSet="UTF-8">"#));
    let mime_back = STANDARD
        .decode(texts(&got.body, "MimeContent")[0].as_bytes())
        .unwrap();
    assert_eq!(String::from_utf8(mime_back).unwrap(), raws[0]);
    let body = got
        .body
        .split(r#"<t:Body BodyType="Text">"#)
        .nth(1)
        .unwrap();
    assert_eq!(body.split("</t:Body>").next().unwrap().trim(), "one");

    // UpdateItem IsRead.
    ok(&world.as_app(ALICE, &set_read(&ids[0], true)).await);
    let listed = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    assert_eq!(
        texts(&listed.body, "IsRead"),
        vec!["false", "false", "true"]
    );

    // MoveItem: a new id; the old one is gone.
    let moved = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:MoveItem><m:ToFolderId><t:DistinguishedFolderId Id="junkemail" /></m:ToFolderId><m:ItemIds><t:ItemId Id="{}" /></m:ItemIds></m:MoveItem>"#,
                ids[0]
            ),
        )
        .await;
    ok(&moved);
    let new_id = attrs(&moved.body, "ItemId", "Id").remove(0);
    assert_ne!(new_id, ids[0]);
    let old = world.as_app(ALICE, &get_item(&ids[0], false)).await;
    assert_eq!(old.status.as_u16(), 200);
    assert!(old.body.contains(r#"ResponseClass="Error""#));
    assert_eq!(texts(&old.body, "ResponseCode"), vec!["ErrorItemNotFound"]);
    assert_eq!(
        texts(&old.body, "MessageText"),
        vec!["The specified object was not found in the store."]
    );
    let junk = world
        .as_app(ALICE, &find_item("junkemail", "IdOnly", 10, 0))
        .await;
    assert_eq!(texts(&junk.body, "Subject"), vec!["First"]);

    // DeleteItem.
    let deleted = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="{new_id}" /></m:ItemIds></m:DeleteItem>"#
            ),
        )
        .await;
    ok(&deleted);
    let gone = world.as_app(ALICE, &get_item(&new_id, false)).await;
    assert_eq!(texts(&gone.body, "ResponseCode"), vec!["ErrorItemNotFound"]);
    let moved_to_trash = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:DeleteItem DeleteType="MoveToDeletedItems"><m:ItemIds><t:ItemId Id="{}" /></m:ItemIds></m:DeleteItem>"#,
                ids[1]
            ),
        )
        .await;
    ok(&moved_to_trash);
    let trash = world
        .as_app(ALICE, &find_item("deleteditems", "IdOnly", 10, 0))
        .await;
    assert_eq!(texts(&trash.body, "Subject"), vec!["Second"]);

    // A malformed id is an item-level error, not a fault.
    let bad = world
        .as_app(ALICE, &get_item("AAMkAGI2TG93AAA=", false))
        .await;
    assert_eq!(bad.status.as_u16(), 200);
    assert_eq!(
        texts(&bad.body, "ResponseCode"),
        vec!["ErrorInvalidIdMalformed"]
    );
    assert_eq!(texts(&bad.body, "MessageText"), vec!["Id is malformed."]);
}

#[tokio::test]
async fn send_and_save_copy_reaches_the_recipient_and_sent_items() {
    let world = World::start_with_mail().await;
    let answer = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:CreateItem MessageDisposition="SendAndSaveCopy">
      <m:SavedItemFolderId><t:DistinguishedFolderId Id="sentitems" /></m:SavedItemFolderId>
      <m:Items>
        <t:Message>
          <t:Subject>Hello from EWS</t:Subject>
          <t:Body BodyType="Text">Hi Bob</t:Body>
          <t:ToRecipients><t:Mailbox><t:EmailAddress>{BOB}</t:EmailAddress></t:Mailbox></t:ToRecipients>
        </t:Message>
      </m:Items>
    </m:CreateItem>"#
            ),
        )
        .await;
    ok(&answer);
    assert!(
        answer.body.contains(
            r#"<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Items /></m:CreateItemResponseMessage>"#
        ),
        "{}",
        answer.body
    );
    let sent = world
        .as_app(ALICE, &find_item("sentitems", "IdOnly", 10, 0))
        .await;
    assert_eq!(texts(&sent.body, "Subject"), vec!["Hello from EWS"]);
    // Bob reads it over POP3.
    let messages = world.pop3_messages(BOB, "Hello from EWS").await;
    let message = messages
        .iter()
        .find(|m| m.contains("Subject: Hello from EWS"))
        .unwrap();
    assert!(
        message.contains(&format!("From: Alice Anders <{ALICE}>")),
        "{message}"
    );
    assert!(
        message.contains("SGkgQm9i"),
        "base64 of the body: {message}"
    );
}

#[tokio::test]
async fn send_only_leaves_no_copy_and_mime_send_strips_bcc() {
    let world = World::start_with_mail().await;
    let raw = format!(
        "From: Alice Anders <{ALICE}>\r\nTo: {BOB}\r\nBcc: {ALICE}\r\nSubject: Raw MIME\r\n\r\nbody\r\n"
    );
    let answer = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:CreateItem MessageDisposition="SendOnly"><m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{}</t:MimeContent></t:Message></m:Items></m:CreateItem>"#,
                STANDARD.encode(&raw)
            ),
        )
        .await;
    ok(&answer);
    subjects_when(&world, BOB, "inbox", "Raw MIME").await;
    // The Bcc recipient got it, without the Bcc header.
    subjects_when(&world, ALICE, "inbox", "Raw MIME").await;
    let listed = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    let id = attrs(&listed.body, "ItemId", "Id").remove(0);
    let got = world.as_app(ALICE, &get_item(&id, true)).await;
    let delivered = String::from_utf8(
        STANDARD
            .decode(texts(&got.body, "MimeContent")[0].as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert!(!delivered.contains("Bcc:"), "{delivered}");
    let sent = world
        .as_app(ALICE, &find_item("sentitems", "IdOnly", 10, 0))
        .await;
    assert_eq!(
        attrs(&sent.body, "RootFolder", "TotalItemsInView"),
        vec!["0"]
    );
}

#[tokio::test]
async fn sending_as_someone_else_needs_send_as() {
    let world = World::start_with_mail().await;
    let answer = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:CreateItem MessageDisposition="SendOnly"><m:Items><t:Message>
          <t:Subject>Spoof</t:Subject>
          <t:ToRecipients><t:Mailbox><t:EmailAddress>{ALICE}</t:EmailAddress></t:Mailbox></t:ToRecipients>
          <t:From><t:Mailbox><t:EmailAddress>{BOB}</t:EmailAddress></t:Mailbox></t:From>
        </t:Message></m:Items></m:CreateItem>"#
            ),
        )
        .await;
    assert_eq!(answer.status.as_u16(), 200);
    assert_eq!(
        texts(&answer.body, "ResponseCode"),
        vec!["ErrorSendAsDenied"]
    );
}

#[tokio::test]
async fn sync_folder_items_initial_and_incremental() {
    let world = World::start_with_mail().await;
    let a = save(&world, ALICE, "inbox", &mime("A", "a")).await;
    let b = save(&world, ALICE, "inbox", &mime("B", "b")).await;

    // Initial sync, one change per call.
    let first = world.as_app(ALICE, &sync("inbox", None, 1)).await;
    ok(&first);
    assert_eq!(texts(&first.body, "IncludesLastItemInRange"), vec!["false"]);
    let mut created = attrs(&first.body, "ItemId", "Id");
    let state = texts(&first.body, "SyncState").remove(0);
    let second = world.as_app(ALICE, &sync("inbox", Some(&state), 1)).await;
    assert_eq!(texts(&second.body, "IncludesLastItemInRange"), vec!["true"]);
    created.extend(attrs(&second.body, "ItemId", "Id"));
    created.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(created, expected);
    let state = texts(&second.body, "SyncState").remove(0);
    let quiet = world.as_app(ALICE, &sync("inbox", Some(&state), 512)).await;
    assert!(quiet.body.contains("<m:Changes />"), "{}", quiet.body);
    let state = texts(&quiet.body, "SyncState").remove(0);

    // A new item, a read flag, a deletion.
    let c = save(&world, ALICE, "inbox", &mime("C", "c")).await;
    ok(&world.as_app(ALICE, &set_read(&a, true)).await);
    ok(&world
        .as_app(
            ALICE,
            &format!(
                r#"<m:DeleteItem DeleteType="HardDelete"><m:ItemIds><t:ItemId Id="{b}" /></m:ItemIds></m:DeleteItem>"#
            ),
        )
        .await);
    let changes = world.as_app(ALICE, &sync("inbox", Some(&state), 512)).await;
    ok(&changes);
    let body = &changes.body;
    assert_eq!(texts(body, "IncludesLastItemInRange"), vec!["true"]);
    let create = body.split("<t:Create>").nth(1).unwrap();
    assert!(create.contains(&c), "{body}");
    let delete = body.split("<t:Delete>").nth(1).unwrap();
    assert!(delete.contains(&b), "{body}");
    let read = body.split("<t:ReadFlagChange>").nth(1).unwrap();
    assert!(
        read.contains(&a) && read.contains("<t:IsRead>true</t:IsRead>"),
        "{body}"
    );

    // A state the server never issued.
    let bad = world
        .as_app(ALICE, &sync("inbox", Some("H4sIAAAAAAAEAO29B2bogus"), 10))
        .await;
    assert_eq!(bad.status.as_u16(), 200);
    assert_eq!(
        texts(&bad.body, "ResponseCode"),
        vec!["ErrorInvalidSyncStateData"]
    );
}

#[tokio::test]
async fn app_only_works_with_and_without_anchor_mailbox() {
    let world = World::start_with_mail().await;
    let with_anchor = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    ok(&with_anchor);
    let token = world.daemon_token();
    let without = world
        .post(
            Some(&format!("Bearer {token}")),
            &[],
            envelope(&impersonation(ALICE), &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    ok(&without);
    // An app with full_access_as_app may impersonate any licensed mailbox.
    ok(&world
        .as_app(BOB, &find_item("inbox", "IdOnly", 10, 0))
        .await);
}

#[tokio::test]
async fn access_policy_takes_effect_after_the_propagation_delay() {
    let world = World::start_with_mail().await;
    world
        .emulator
        .update_knobs(|k| k.exchange_propagation_delay_secs = 3600);
    world.add_policy(AccessPolicyMode::RestrictAccess, &[BOB], true);
    ok(&world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await);
    world.clock.advance(time::Duration::seconds(3601));
    let answer = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    answer.assert_fault(500, "ErrorAccessDenied");
    ok(&world
        .as_app(BOB, &find_item("inbox", "IdOnly", 10, 0))
        .await);
}

fn bobs_inbox() -> String {
    format!(
        r#"<m:FindItem Traversal="Shallow">
      <m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>
      <m:ParentFolderIds>
        <t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>{BOB}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>
      </m:ParentFolderIds>
    </m:FindItem>"#
    )
}

#[tokio::test]
async fn delegated_user_opens_own_mailbox_and_full_access_ones() {
    let world = World::start_with_mail().await;
    save(&world, BOB, "inbox", &mime("For Bob", "x")).await;
    ok(&world
        .as_user(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await);
    let denied = world.as_user(ALICE, &bobs_inbox()).await;
    assert_eq!(denied.status.as_u16(), 200);
    assert_eq!(
        texts(&denied.body, "ResponseCode"),
        vec!["ErrorAccessDenied"]
    );
    world.emulator.update(|m| {
        m.tenants[0].mailbox_permissions.push(MailboxPermission {
            mailbox: BOB.to_owned(),
            trustee: ALICE.to_owned(),
            right: MailboxRight::FullAccess,
            added_at: None,
        });
    });
    let allowed = world.as_user(ALICE, &bobs_inbox()).await;
    ok(&allowed);
    assert_eq!(
        attrs(&allowed.body, "RootFolder", "TotalItemsInView"),
        vec!["1"]
    );
}

#[tokio::test]
async fn basic_auth_works_on_an_on_premises_tenant() {
    let world = World::start_with_mail().await;
    let basic = STANDARD.encode(format!("{FRANK}:{FRANK_PASSWORD}"));
    let answer = world
        .post(
            Some(&format!("Basic {basic}")),
            &[],
            envelope("", &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    ok(&answer);
    assert_eq!(
        attrs(&answer.body, "RootFolder", "TotalItemsInView"),
        vec!["0"]
    );
}

#[tokio::test]
async fn get_folder_reports_counts() {
    let world = World::start_with_mail().await;
    let read = save(&world, ALICE, "inbox", &mime("Read one", "r")).await;
    save(&world, ALICE, "inbox", &mime("Unread one", "u")).await;
    ok(&world.as_app(ALICE, &set_read(&read, true)).await);
    let answer = world
        .as_app(
            ALICE,
            r#"<m:GetFolder>
      <m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape>
      <m:FolderIds><t:DistinguishedFolderId Id="inbox" /></m:FolderIds>
    </m:GetFolder>"#,
        )
        .await;
    ok(&answer);
    assert_eq!(texts(&answer.body, "DisplayName"), vec!["Inbox"]);
    assert_eq!(texts(&answer.body, "TotalCount"), vec!["2"]);
    assert_eq!(texts(&answer.body, "UnreadCount"), vec!["1"]);
    // The FolderId it hands out lists the same folder.
    let folder_id = attrs(&answer.body, "FolderId", "Id").remove(0);
    let listed = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:FolderId Id="{folder_id}" /></m:ParentFolderIds></m:FindItem>"#
            ),
        )
        .await;
    ok(&listed);
    assert_eq!(
        attrs(&listed.body, "RootFolder", "TotalItemsInView"),
        vec!["2"]
    );
}

#[tokio::test]
async fn update_of_other_fields_is_refused_not_ignored() {
    let world = World::start_with_mail().await;
    let id = save(&world, ALICE, "inbox", &mime("Keep", "k")).await;
    let answer = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:UpdateItem MessageDisposition="SaveOnly" ConflictResolution="AlwaysOverwrite"><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}" /><t:Updates><t:SetItemField><t:FieldURI FieldURI="item:Subject" /><t:Message><t:Subject>Changed</t:Subject></t:Message></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
            ),
        )
        .await;
    assert_eq!(answer.status.as_u16(), 200);
    assert_eq!(
        texts(&answer.body, "ResponseCode"),
        vec!["ErrorInvalidPropertySet"]
    );
    let listed = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    assert_eq!(texts(&listed.body, "Subject"), vec!["Keep"]);
}

#[tokio::test]
async fn send_as_permission_lets_a_user_send_from_another_mailbox() {
    let world = World::start_with_mail().await;
    world.emulator.update(|m| {
        m.tenants[0].mailbox_permissions.push(MailboxPermission {
            mailbox: BOB.to_owned(),
            trustee: ALICE.to_owned(),
            right: MailboxRight::SendAs,
            added_at: None,
        });
    });
    let answer = world
        .as_user(
            ALICE,
            &format!(
                r#"<m:CreateItem MessageDisposition="SendOnly"><m:Items><t:Message>
          <t:Subject>On behalf of the team</t:Subject>
          <t:Body BodyType="HTML">&lt;p&gt;Hi&lt;/p&gt;</t:Body>
          <t:ToRecipients><t:Mailbox><t:EmailAddress>{ALICE}</t:EmailAddress></t:Mailbox></t:ToRecipients>
          <t:From><t:Mailbox><t:EmailAddress>{BOB}</t:EmailAddress></t:Mailbox></t:From>
        </t:Message></m:Items></m:CreateItem>"#
            ),
        )
        .await;
    ok(&answer);
    subjects_when(&world, ALICE, "inbox", "On behalf of the team").await;
    let listed = world
        .as_user(ALICE, &find_item("inbox", "AllProperties", 1, 0))
        .await;
    let from = listed.body.split("<t:From>").nth(1).unwrap();
    assert!(
        from.contains(&format!("<t:EmailAddress>{BOB}</t:EmailAddress>")),
        "{from}"
    );
    let id = attrs(&listed.body, "ItemId", "Id").remove(0);
    let got = world.as_user(ALICE, &get_item(&id, false)).await;
    assert!(
        got.body
            .contains(r#"<t:Body BodyType="HTML">&lt;p&gt;Hi&lt;/p&gt;"#),
        "{}",
        got.body
    );
}

#[tokio::test]
async fn sync_ignores_listed_items_and_refuses_another_folders_state() {
    let world = World::start_with_mail().await;
    let a = save(&world, ALICE, "inbox", &mime("A", "a")).await;
    let b = save(&world, ALICE, "inbox", &mime("B", "b")).await;
    let answer = world
        .as_app(
            ALICE,
            &format!(
                r#"<m:SyncFolderItems>
      <m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>
      <m:SyncFolderId><t:DistinguishedFolderId Id="inbox" /></m:SyncFolderId>
      <m:Ignore><t:ItemId Id="{a}" /></m:Ignore>
      <m:MaxChangesReturned>512</m:MaxChangesReturned>
    </m:SyncFolderItems>"#
            ),
        )
        .await;
    ok(&answer);
    assert_eq!(attrs(&answer.body, "ItemId", "Id"), vec![b]);
    let state = texts(&answer.body, "SyncState").remove(0);
    let other = world
        .as_app(ALICE, &sync("sentitems", Some(&state), 10))
        .await;
    assert_eq!(
        texts(&other.body, "ResponseCode"),
        vec!["ErrorInvalidSyncStateData"]
    );
    let out_of_range = world.as_app(ALICE, &sync("inbox", Some(&state), 513)).await;
    out_of_range.assert_fault(500, "ErrorSchemaValidation");
}
