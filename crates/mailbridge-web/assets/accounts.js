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
