// mailbridge web UI, account pages: shows each <time datetime="...Z"> in the viewer's
// own time zone and language. The UTC text the server wrote stays as the tooltip;
// without this script the page shows UTC.
(function () {
  "use strict";
  var lang = document.documentElement.lang || undefined;
  var format;
  try {
    format = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" });
  } catch (e) {
    return;
  }
  var times = document.querySelectorAll("time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var el = times[i];
    var when = new Date(el.getAttribute("datetime"));
    if (isNaN(when.getTime())) {
      continue;
    }
    el.title = el.textContent;
    el.textContent = format.format(when);
    el.classList.add("local");
  }
})();

// While a Test receive / Test send runs (the form posts as usual; the result page
// comes when the check ends), say so, and do not send the form twice.
(function () {
  "use strict";
  var running = document.getElementById("test-running");
  var forms = document.querySelectorAll("form[data-tests]");
  for (var i = 0; i < forms.length; i++) {
    forms[i].addEventListener("submit", function (event) {
      var form = event.currentTarget;
      if (form.getAttribute("aria-busy") === "true") {
        event.preventDefault();
        return;
      }
      var by = event.submitter;
      var testing = !by || !by.value || by.value.indexOf("test") === 0;
      if (running && testing) {
        running.hidden = false;
      }
      form.setAttribute("aria-busy", "true");
    });
  }
})();
