// Page behaviours that need a little script (no inline JS: the site runs under a CSP).
(function () {
  "use strict";

  // Forms with data-confirm ask first (e.g. cancelling a fine-tune job).
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Catalogue: Back/Forward restores the page from htmx's history cache, whose
  // inputs hold the values they were first rendered with; make them follow the URL.
  function syncSearchForm() {
    var form = document.getElementById("search-form");
    if (!form) return;
    var params = new URLSearchParams(window.location.search);
    ["q", "min_precision", "max_p95_ms"].forEach(function (name) {
      var input = form.elements.namedItem(name);
      if (input) input.value = params.get(name) || "";
    });
    var sort = form.elements.namedItem("sort");
    if (sort) sort.value = params.get("sort") || "relevance";
  }
  document.addEventListener("htmx:historyRestore", syncSearchForm);
  window.addEventListener("popstate", function () { window.setTimeout(syncSearchForm, 0); });
  window.addEventListener("pageshow", syncSearchForm);

  // Job page: the live part is swapped every second. The log keeps where the
  // reader left it, follows new lines when it was at the bottom, and opens at
  // the bottom (the latest lines).
  var log = null;
  function logBox(root) {
    return (root && root.querySelector) ? root.querySelector("pre.log") : null;
  }
  document.addEventListener("htmx:beforeSwap", function () {
    var box = logBox(document);
    if (box) {
      log = { top: box.scrollTop, atBottom: box.scrollTop + box.clientHeight >= box.scrollHeight - 4 };
    }
  });
  document.addEventListener("htmx:load", function (event) {
    var box = logBox(event.target) || (event.target.matches && event.target.matches("pre.log") ? event.target : null);
    if (!box) return;
    box.scrollTop = (log && !log.atBottom) ? log.top : box.scrollHeight;
    log = null;
  });
})();
