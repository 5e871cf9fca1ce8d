# The administration pages (apps, providers, outbox, parked, users, settings, audit log).
admin-nav-label = Sections
admin-nav-dashboard = Dashboard
admin-nav-accounts = Accounts
admin-nav-apps = Apps
admin-nav-providers = Providers
admin-nav-outbox = Outbox
admin-nav-parked = Parked
admin-nav-users = Users
admin-nav-settings = Settings
admin-nav-audit = Audit log
