// The review page's only script: keep the live part of a page current without reloading it.
// An element with data-version-url and data-panel-url is refreshed whenever the version changes
// (the run's log, decisions or owner moved). A page with forms being edited (data-keep-edits)
// is not replaced under the person typing; it says the queue changed instead.
(function () {
  "use strict";
  var POLL_MS = 1500;

  function start(el) {
    var version = null, dirty = false;
    el.addEventListener("input", function () { dirty = true; });
    function tick() {
      fetch(el.dataset.versionUrl, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
        if (r.status === 404) {
          document.getElementById("gone").classList.remove("hidden");
          document.body.dataset.runGone = "1";
          return null;
        }
        return r.json();
      }).then(function (data) {
        if (!data) { return; }
        if (version !== null && data.version !== version) {
          if (el.dataset.keepEdits && dirty) {
            var note = document.getElementById("changed");
            if (!note) {
              note = document.createElement("p");
              note.id = "changed";
              note.className = "banner";
              note.textContent = "The queue changed; reload to see it (your edits here are not sent yet).";
              el.parentNode.insertBefore(note, el);
            }
          } else {
            refresh();
          }
        }
        version = data.version;
        document.body.dataset.version = version;
      }).catch(function () { /* the server is restarting; try again */ }).then(function () {
        setTimeout(tick, POLL_MS);
      });
    }
    function refresh() {
      var url = el.dataset.panelUrl + (el.dataset.panelUrl.indexOf("?") < 0 ? location.search : "");
      fetch(url, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
        if (r.status === 404) { document.getElementById("gone").classList.remove("hidden"); return null; }
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html !== null) {
          el.innerHTML = html;
          document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
        }
      });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-version-url]").forEach(start);
  });
})();
