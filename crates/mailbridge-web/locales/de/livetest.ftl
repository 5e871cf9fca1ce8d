# Empfang testen / Senden testen, live (Helfer „livetest“).
livetest-running = Test läuft… Jeder Schritt erscheint hier, sobald er beendet ist.
livetest-refresh = Neu laden, um die seither beendeten Schritte zu sehen
livetest-deadline = Der Test wurde nach { $seconds } Sekunden abgebrochen: Der Server hat auf den nächsten Schritt nicht rechtzeitig geantwortet. Prüfen Sie, ob der Server sein eigenes Backend erreicht, und starten Sie den Test erneut.
livetest-busy = Bei Ihnen laufen bereits { $count } Tests. Warten Sie, bis einer endet, und starten Sie diesen dann erneut.
livetest-gone = Dieser Testlauf wird nicht mehr aufbewahrt (er ist älter als zehn Minuten oder wurde in einer anderen Sitzung gestartet). Starten Sie den Test erneut auf der Seite des Kontos.
