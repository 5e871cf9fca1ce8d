# Test odbierania / Test wysyłania na żywo (pomocnik „livetest”).
livetest-running = Trwa test… Każdy krok pojawia się tutaj, gdy tylko się zakończy.
livetest-refresh = Odśwież, aby zobaczyć kroki zakończone od tej pory
livetest-deadline = Test zatrzymano po { $seconds } s: serwer nie odpowiedział w porę na kolejny krok. Sprawdź, czy serwer łączy się ze swoim zapleczem, i uruchom test ponownie.
livetest-busy = Masz już uruchomione testy: { $count }. Poczekaj, aż któryś się zakończy, i uruchom ten ponownie.
livetest-gone = Ten przebieg testu nie jest już przechowywany (jest starszy niż dziesięć minut albo rozpoczęto go w innej sesji). Uruchom test ponownie ze strony konta.
