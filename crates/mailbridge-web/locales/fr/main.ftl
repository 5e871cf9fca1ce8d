# Interface web de mailbridge : français.
app-name = mailbridge
role-administrator = administrateur
role-user = utilisateur
role-auditor = auditeur
signed-in-as = Connecté en tant que { $name } ({ $role })
sign-out = Se déconnecter
skip-to-content = Aller au contenu

signin-title = Connexion
signin-name = Nom
signin-password = Mot de passe
signin-submit = Se connecter
signin-wrong = Nom ou mot de passe incorrect.
signin-disabled = Cet utilisateur est désactivé. Demandez à un administrateur de le réactiver.
signin-throttled = Trop de connexions échouées. Réessayez dans { $seconds } s.
signin-no-users = Personne ne peut encore se connecter. Ouvrez le lien de configuration à usage unique affiché par « mailbridge serve », ou exécutez « mailbridge user add NOM --admin ».

setup-title = Créer le premier administrateur
setup-intro = Ce lien ne fonctionne qu’une fois. L’administrateur créé ici gère les fournisseurs, les applications, les utilisateurs et tous les comptes.
setup-name = Nom
setup-password = Mot de passe
setup-password-again = Confirmer le mot de passe
setup-password-hint = Au moins { $min } caractères.
setup-submit = Créer l’administrateur
setup-invalid = Ce lien de configuration a déjà été utilisé ou a expiré. Redémarrez « mailbridge serve » pour obtenir un nouveau lien, ou exécutez « mailbridge user add NOM --admin ».
setup-mismatch = Les deux mots de passe diffèrent. Saisissez deux fois le même mot de passe.
setup-too-short = Le mot de passe est trop court : utilisez au moins { $min } caractères.
setup-too-long = Le mot de passe est trop long : utilisez au plus { $max } octets.
setup-name-invalid = Choisissez un nom de 1 à 64 lettres, chiffres, points, tirets, traits de soulignement ou @.

dashboard-title = Comptes
dashboard-empty = Aucun compte pour l’instant. Ajoutez-en un avec « mailbridge account add ».
dashboard-none-yours = Vous n’avez pas encore de comptes.
column-name = Nom
column-address = Adresse
column-state = État
state-connecting = Connexion en cours
state-syncing = Synchronisation
state-idle = Inactif
state-waiting = En attente jusqu’à { $until }
state-needs-sign-in = Connexion requise
state-disabled = Désactivé
state-not-watched = Non surveillé

forbidden-title = Refusé
csrf-refused = Ce formulaire a été refusé car il ne contenait pas son jeton de sécurité. Rechargez la page et envoyez à nouveau le formulaire.
error-title = Une erreur s’est produite
error-store = Le stockage n’a pas répondu. Réessayez ; si l’erreur persiste, consultez le journal du service.
