# mailbridge-Weboberfläche: Deutsch.
app-name = mailbridge
role-administrator = Administrator
role-user = Benutzer
role-auditor = Prüfer
signed-in-as = Angemeldet als { $name } ({ $role })
sign-out = Abmelden
skip-to-content = Zum Inhalt springen

signin-title = Anmelden
signin-name = Name
signin-password = Kennwort
signin-submit = Anmelden
signin-wrong = Falscher Name oder falsches Kennwort.
signin-disabled = Dieser Benutzer ist deaktiviert. Bitten Sie einen Administrator, ihn wieder zu aktivieren.
signin-throttled = Zu viele fehlgeschlagene Anmeldungen. Versuchen Sie es in { $seconds } s erneut.
signin-no-users = Noch kann sich niemand anmelden. Öffnen Sie den einmaligen Einrichtungslink, den „mailbridge serve“ ausgegeben hat, oder führen Sie „mailbridge user add NAME --admin“ aus.

setup-title = Ersten Administrator anlegen
setup-intro = Dieser Link funktioniert einmal. Der hier angelegte Administrator verwaltet Anbieter, Apps, Benutzer und alle Konten.
setup-name = Name
setup-password = Kennwort
setup-password-again = Kennwort wiederholen
setup-password-hint = Mindestens { $min } Zeichen.
setup-submit = Administrator anlegen
setup-invalid = Dieser Einrichtungslink wurde bereits verwendet oder ist abgelaufen. Starten Sie „mailbridge serve“ neu, um einen neuen Link zu erhalten, oder führen Sie „mailbridge user add NAME --admin“ aus.
setup-mismatch = Die beiden Kennwörter unterscheiden sich. Geben Sie zweimal dasselbe Kennwort ein.
setup-too-short = Das Kennwort ist zu kurz: verwenden Sie mindestens { $min } Zeichen.
setup-too-long = Das Kennwort ist zu lang: verwenden Sie höchstens { $max } Bytes.
setup-name-invalid = Wählen Sie einen Namen aus 1 bis 64 Buchstaben, Ziffern, Punkten, Bindestrichen, Unterstrichen oder @.

dashboard-title = Konten
dashboard-empty = Noch keine Konten. Fügen Sie eines mit „mailbridge account add“ hinzu.
dashboard-none-yours = Sie haben noch keine eigenen Konten.
column-name = Name
column-address = Adresse
column-state = Status
state-connecting = Verbindet
state-syncing = Synchronisiert
state-idle = Bereit
state-waiting = Wartet bis { $until }
state-needs-sign-in = Anmeldung erforderlich
state-disabled = Deaktiviert
state-not-watched = Nicht überwacht

forbidden-title = Abgelehnt
csrf-refused = Dieses Formular wurde abgelehnt, weil es kein Sicherheitstoken enthielt. Laden Sie die Seite neu und senden Sie das Formular erneut.
error-title = Etwas ist schiefgegangen
error-store = Der Datenspeicher hat nicht geantwortet. Versuchen Sie es erneut; wenn der Fehler bleibt, lesen Sie das Protokoll des Dienstes.
