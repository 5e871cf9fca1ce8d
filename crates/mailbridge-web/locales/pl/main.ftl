# Interfejs WWW mailbridge: polski.
app-name = mailbridge
role-administrator = administrator
role-user = użytkownik
role-auditor = audytor
signed-in-as = Zalogowano jako { $name } ({ $role })
sign-out = Wyloguj
skip-to-content = Przejdź do treści

signin-title = Logowanie
signin-name = Nazwa
signin-password = Hasło
signin-submit = Zaloguj
signin-wrong = Nieprawidłowa nazwa lub hasło.
signin-disabled = Ten użytkownik jest wyłączony. Poproś administratora o ponowne włączenie.
signin-throttled = Zbyt wiele nieudanych prób logowania. Spróbuj ponownie za { $seconds } s.
signin-no-users = Nikt nie może się jeszcze zalogować. Otwórz jednorazowy link konfiguracyjny wypisany przez „mailbridge serve” albo uruchom „mailbridge user add NAZWA --admin”.

setup-title = Utwórz pierwszego administratora
setup-intro = Ten link działa jeden raz. Utworzony tutaj administrator zarządza dostawcami, aplikacjami, użytkownikami i wszystkimi kontami.
setup-name = Nazwa
setup-password = Hasło
setup-password-again = Powtórz hasło
setup-password-hint = Co najmniej { $min } znaków.
setup-submit = Utwórz administratora
setup-invalid = Ten link konfiguracyjny został już użyty lub wygasł. Uruchom ponownie „mailbridge serve”, aby otrzymać nowy link, albo uruchom „mailbridge user add NAZWA --admin”.
setup-mismatch = Hasła się różnią. Wpisz dwa razy to samo hasło.
setup-too-short = Hasło jest za krótkie: użyj co najmniej { $min } znaków.
setup-too-long = Hasło jest za długie: użyj najwyżej { $max } bajtów.
setup-name-invalid = Wybierz nazwę z 1–64 liter, cyfr, kropek, myślników, podkreśleń lub @.

dashboard-title = Konta
dashboard-empty = Nie ma jeszcze kont. Dodaj konto poleceniem „mailbridge account add”.
dashboard-none-yours = Nie masz jeszcze własnych kont.
column-name = Nazwa
column-address = Adres
column-state = Stan
state-connecting = Łączenie
state-syncing = Synchronizacja
state-idle = Bezczynne
state-waiting = Oczekuje do { $until }
state-needs-sign-in = Wymaga zalogowania
state-disabled = Wyłączone
state-not-watched = Nieobserwowane

forbidden-title = Odrzucono
csrf-refused = Formularz został odrzucony, ponieważ nie zawierał tokenu bezpieczeństwa. Odśwież stronę i wyślij formularz ponownie.
error-title = Coś poszło nie tak
error-store = Magazyn danych nie odpowiedział. Spróbuj ponownie; jeśli błąd się powtarza, przeczytaj dziennik usługi.
