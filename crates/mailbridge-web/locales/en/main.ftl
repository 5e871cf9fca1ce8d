# mailbridge web UI: English (the reference: every other language has exactly these ids).
app-name = mailbridge
role-administrator = administrator
role-user = user
role-auditor = auditor
signed-in-as = Signed in as { $name } ({ $role })
sign-out = Sign out
skip-to-content = Skip to content

signin-title = Sign in
signin-name = Name
signin-password = Password
signin-submit = Sign in
signin-wrong = Wrong name or password.
signin-disabled = This user is disabled. Ask an administrator to enable it again.
signin-throttled = Too many failed sign-ins. Try again in { $seconds } s.
signin-no-users = No one can sign in yet. Open the one-time setup link that “mailbridge serve” printed, or run “mailbridge user add NAME --admin”.

setup-title = Create the first administrator
setup-intro = This link works once. The administrator you create here manages providers, apps, users and every account.
setup-name = Name
setup-password = Password
setup-password-again = Password again
setup-password-hint = At least { $min } characters.
setup-submit = Create administrator
setup-invalid = This setup link was used already or has expired. Restart “mailbridge serve” for a new link, or run “mailbridge user add NAME --admin”.
setup-mismatch = The two passwords differ. Type the same password twice.
setup-too-short = The password is too short: use at least { $min } characters.
setup-too-long = The password is too long: use at most { $max } bytes.
setup-name-invalid = Choose a name of 1 to 64 letters, digits, dots, dashes, underscores or @.

dashboard-title = Accounts
dashboard-empty = No accounts yet. Add one with “mailbridge account add”.
dashboard-none-yours = No accounts of yours yet.
column-name = Name
column-address = Address
column-state = State
state-connecting = Connecting
state-syncing = Syncing
state-idle = Idle
state-waiting = Waiting until { $until }
state-needs-sign-in = Needs sign-in
state-disabled = Disabled
state-not-watched = Not watched

forbidden-title = Refused
csrf-refused = This form was refused because it did not carry its security token. Reload the page and send the form again.
error-title = Something went wrong
error-store = The store did not answer. Try again; if it keeps failing, read the daemon’s log.
