# Strony administracyjne (aplikacje, dostawcy, skrzynka nadawcza, wstrzymane, użytkownicy, ustawienia, dziennik audytu).
admin-nav-label = Sekcje
admin-nav-dashboard = Pulpit
admin-nav-accounts = Konta
admin-nav-apps = Aplikacje
admin-nav-providers = Dostawcy
admin-nav-outbox = Do wysłania
admin-nav-parked = Wstrzymane
admin-nav-users = Użytkownicy
admin-nav-settings = Ustawienia
admin-nav-audit = Dziennik audytu
