// The rating page from the keyboard: 1, 2, 3 and 0 answer the focused question and move on to
// the next one; Enter sends the answers. No framework: the page works without this file too.
(function () {
  "use strict";

  var form = document.getElementById("vote-form");
  if (!form) {
    return;
  }
  var questions = Array.prototype.slice.call(form.querySelectorAll("fieldset.question"));
  var submitButton = form.querySelector("button[type=submit]");
  var answerForKey = { "1": "1", "2": "2", "3": "tie", "0": "skip" };

  function send() {
    // requestSubmit runs the browser's own checks, which point at an unanswered question.
    if (form.requestSubmit) {
      form.requestSubmit(submitButton);
    } else {
      submitButton.click();
    }
  }

  form.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.isComposing) {
      return;
    }
    var target = event.target;
    if (event.key === "Enter") {
      if (target === submitButton || (target.tagName === "TEXTAREA" && event.shiftKey)) {
        return;
      }
      event.preventDefault();
      send();
      return;
    }
    var question = target.closest ? target.closest("fieldset.question") : null;
    var answer = answerForKey[event.key];
    if (!question || answer === undefined) {
      return;
    }
    var input = question.querySelector('input[type=radio][value="' + answer + '"]');
    if (!input) {
      return;
    }
    event.preventDefault();
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    var next = questions[questions.indexOf(question) + 1];
    (next || submitButton).focus();
  });

  form.addEventListener("submit", function () {
    // One vote per pair: a second press would only earn a "you already voted" page.
    submitButton.disabled = true;
  });
  window.addEventListener("pageshow", function () {
    submitButton.disabled = false;
  });

  // Ready for the keys at once, without scrolling the images out of view.
  if (questions.length && document.activeElement === document.body) {
    questions[0].focus({ preventScroll: true });
  }
})();
