# Les pages d’administration (applications, fournisseurs, boîte d’envoi, en attente, utilisateurs, paramètres, journal d’audit).
admin-nav-label = Sections
admin-nav-dashboard = Tableau de bord
admin-nav-accounts = Comptes
admin-nav-apps = Applications
admin-nav-providers = Fournisseurs
admin-nav-outbox = Boîte d’envoi
admin-nav-parked = En attente
admin-nav-users = Utilisateurs
admin-nav-settings = Paramètres
admin-nav-audit = Journal d’audit
