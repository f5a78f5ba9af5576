// "Select all on this page" for the retry/scheduled/dead lists (the rest of the page works without JS).
(function () {
  "use strict";
  document.querySelectorAll("input.select-all").forEach(function (all) {
    all.addEventListener("change", function () {
      var form = all.closest("form");
      form.querySelectorAll('input[type="checkbox"][name="key"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
})();
