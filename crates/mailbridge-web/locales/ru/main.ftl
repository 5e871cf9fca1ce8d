# Веб-интерфейс mailbridge: русский.
app-name = mailbridge
role-administrator = администратор
role-user = пользователь
role-auditor = аудитор
signed-in-as = Вы вошли как { $name } ({ $role })
sign-out = Выйти
skip-to-content = Перейти к содержимому

signin-title = Вход
signin-name = Имя
signin-password = Пароль
signin-submit = Войти
signin-wrong = Неверное имя или пароль.
signin-disabled = Этот пользователь отключён. Попросите администратора снова включить его.
signin-throttled = Слишком много неудачных попыток входа. Повторите через { $seconds } с.
signin-no-users = Пока никто не может войти. Откройте одноразовую ссылку настройки, которую вывел «mailbridge serve», или выполните «mailbridge user add ИМЯ --admin».

setup-title = Создание первого администратора
setup-intro = Эта ссылка работает один раз. Созданный здесь администратор управляет поставщиками, приложениями, пользователями и всеми учётными записями.
setup-name = Имя
setup-password = Пароль
setup-password-again = Пароль ещё раз
setup-password-hint = Не менее { $min } символов.
setup-submit = Создать администратора
setup-invalid = Эта ссылка настройки уже использована или истекла. Перезапустите «mailbridge serve», чтобы получить новую ссылку, или выполните «mailbridge user add ИМЯ --admin».
setup-mismatch = Пароли не совпадают. Введите один и тот же пароль дважды.
setup-too-short = Пароль слишком короткий: используйте не менее { $min } символов.
setup-too-long = Пароль слишком длинный: используйте не более { $max } байт.
setup-name-invalid = Выберите имя из 1–64 букв, цифр, точек, дефисов, подчёркиваний или @.

dashboard-title = Учётные записи
dashboard-empty = Учётных записей пока нет. Добавьте её командой «mailbridge account add».
dashboard-none-yours = У вас пока нет собственных учётных записей.
column-name = Имя
column-address = Адрес
column-state = Состояние
state-connecting = Подключение
state-syncing = Синхронизация
state-idle = Ожидание почты
state-waiting = Ожидание до { $until }
state-needs-sign-in = Требуется вход
state-disabled = Отключено
state-not-watched = Не отслеживается

forbidden-title = Отклонено
csrf-refused = Форма отклонена, так как в ней нет токена безопасности. Обновите страницу и отправьте форму снова.
error-title = Что-то пошло не так
error-store = Хранилище не ответило. Повторите попытку; если ошибка повторяется, посмотрите журнал службы.
