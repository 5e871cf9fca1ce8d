# Страницы администрирования (приложения, провайдеры, исходящие, отложенные, пользователи, настройки, журнал аудита).
admin-nav-label = Разделы
admin-nav-dashboard = Обзор
admin-nav-accounts = Учётные записи
admin-nav-apps = Приложения
admin-nav-providers = Провайдеры
admin-nav-outbox = Исходящие
admin-nav-parked = Отложенные
admin-nav-users = Пользователи
admin-nav-settings = Настройки
admin-nav-audit = Журнал аудита
