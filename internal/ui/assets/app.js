// The dashboard's one script: times in the viewer's zone, "select all",
// and the viewer's UTC offset for the silence form. Every page works
// without it, in UTC.
"use strict";
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var d = new Date(el.getAttribute("datetime"));
  if (isNaN(d)) return;
  el.textContent = d.toLocaleString();
  el.title = el.getAttribute("title") || d.toISOString();
});
document.querySelectorAll("input[data-select-all]").forEach(function (box) {
  box.addEventListener("change", function () {
    document.querySelectorAll("input[name=" + box.getAttribute("data-select-all") + "]").forEach(function (c) {
      c.checked = box.checked;
    });
  });
});
document.querySelectorAll("input[name=tz_offset]").forEach(function (el) {
  el.value = String(-new Date().getTimezoneOffset());
});
