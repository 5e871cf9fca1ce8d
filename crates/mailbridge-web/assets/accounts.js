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

// A Test receive / Test send run going on (#live-test[data-poll]): asks the server for
// the steps so far (JSON) every second and appends each new one to the list, an
// aria-live region; when the run ends, shows its summary and drops the Refresh link.
// Without this script the Refresh link shows the same progress.
(function () {
  "use strict";
  var live = document.getElementById("live-test");
  var url = live && live.getAttribute("data-poll");
  if (!url || !window.fetch) {
    return;
  }
  var list = live.querySelector("ol.steps");
  var summary = document.getElementById("test-summary");
  function span(cls, text) {
    var el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }
  function item(step) {
    var li = document.createElement("li");
    li.className = "step " + (step.ok ? "ok" : "bad");
    var mark = span("mark", step.ok ? "\u2713" : "\u2717");
    mark.setAttribute("aria-hidden", "true");
    li.appendChild(mark);
    li.appendChild(span("visually-hidden", step.state));
    var name = document.createElement("strong");
    name.className = "step-name";
    name.textContent = step.name;
    li.appendChild(name);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(span("ms", step.ms));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(span("step-detail", step.detail));
    if (step.fix) {
      var fix = span("fix", " " + step.fix);
      var label = document.createElement("strong");
      label.textContent = step.fix_label;
      fix.insertBefore(label, fix.firstChild);
      li.appendChild(fix);
    }
    return li;
  }
  function show(run) {
    for (var i = list.children.length; i < run.steps.length; i++) {
      list.appendChild(item(run.steps[i]));
    }
    if (run.done) {
      summary.textContent = run.summary;
      summary.className = run.ok ? "passed" : "failed";
      live.removeAttribute("data-poll");
      live.setAttribute("data-done", "true");
      var refresh = document.getElementById("live-refresh");
      if (refresh) {
        refresh.parentNode.removeChild(refresh);
      }
    }
    return run.done;
  }
  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.json();
      })
      .then(function (run) {
        if (!show(run)) {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () {
        // The Refresh link stays: the person can still follow the run.
      });
  }
  window.setTimeout(poll, 500);
})();
