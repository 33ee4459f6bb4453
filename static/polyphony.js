// Small behaviours of every page, kept out of the HTML: the Content-Security-Policy allows no
// inline event handlers. A select marked data-submit-on-change submits its form (the language
// menu); a form marked data-confirm asks first; a form marked data-disable-on-submit disables
// its buttons once sent, so a second press sends nothing twice.
(function () {
  "use strict";

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches("select[data-submit-on-change]") && select.form) {
      select.form.submit();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    if (form.hasAttribute("data-disable-on-submit")) {
      Array.prototype.forEach.call(form.querySelectorAll("button"), function (button) {
        button.disabled = true;
      });
    }
  });
})();
