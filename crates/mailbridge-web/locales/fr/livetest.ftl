# Tester la réception / Tester l’envoi, en direct (assistant « livetest »).
livetest-running = Test en cours… Chaque étape s’affiche ici dès qu’elle est terminée.
livetest-refresh = Actualiser pour voir les étapes terminées depuis
livetest-deadline = Le test a été arrêté après { $seconds } secondes : le serveur n’a pas répondu à temps à l’étape suivante. Vérifiez que le serveur joint son propre service principal, puis relancez le test.
livetest-busy = Vous avez déjà { $count } tests en cours. Attendez que l’un d’eux se termine, puis relancez celui-ci.
livetest-gone = Ce test n’est plus conservé (il date de plus de dix minutes ou a été lancé dans une autre session). Relancez le test depuis la page du compte.
