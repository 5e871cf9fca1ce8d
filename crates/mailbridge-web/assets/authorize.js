// The Authorize page: while a device-code sign-in waits, ask its status every few
// seconds and reload the page once it ended (signed in, or failed). Without this
// script the page's "Check" button does the same.
(function () {
  "use strict";
  var status = document.getElementById("device-status");
  if (!status) { return; }
  var url = status.getAttribute("data-status");
  var seconds = parseInt(status.getAttribute("data-interval"), 10);
  if (!(seconds >= 1)) { seconds = 5; }
  var delay = Math.min(seconds, 5) * 1000;
  function ask() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : { state: "waiting" }; })
      .then(function (s) {
        if (s.state === "waiting") { setTimeout(ask, delay); }
        else { window.location.reload(); }
      })
      .catch(function () { setTimeout(ask, delay * 2); });
  }
  setTimeout(ask, delay);
})();
