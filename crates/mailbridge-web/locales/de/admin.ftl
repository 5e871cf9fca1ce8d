# Die Verwaltungsseiten (Apps, Anbieter, Postausgang, Zurückgestellt, Benutzer, Einstellungen, Überwachungsprotokoll).
admin-nav-label = Bereiche
admin-nav-dashboard = Übersicht
admin-nav-accounts = Konten
admin-nav-apps = Apps
admin-nav-providers = Anbieter
admin-nav-outbox = Postausgang
admin-nav-parked = Zurückgestellt
admin-nav-users = Benutzer
admin-nav-settings = Einstellungen
admin-nav-audit = Überwachungsprotokoll
