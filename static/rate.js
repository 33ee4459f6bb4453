// The rating page from the keyboard: 1, 2, 3 and 0 answer the focused question and move on to
// the next one; Enter sends the answers. A vote (or a skip) is posted with fetch and answered
// with the next pair as JSON, whose images were fetched ahead, so the next pair shows at once:
// one request per vote. No framework: without this file the forms post and the page reloads.
(function () {
  "use strict";

  var form = document.getElementById("vote-form");
  if (!form) {
    return;
  }
  var skipForm = document.querySelector("form.skip-form");
  var questions = Array.prototype.slice.call(form.querySelectorAll("fieldset.question"));
  var submitButton = form.querySelector("button[type=submit]");
  var answerForKey = { "1": "1", "2": "2", "3": "tie", "0": "skip" };
  var busy = false;

  function send() {
    // requestSubmit runs the browser's own checks, which point at an unanswered question.
    if (form.requestSubmit) {
      form.requestSubmit(submitButton);
    } else {
      submitButton.click();
    }
  }

  // A question is one stop for Tab: its radio group (the answer given, else the first).
  function questionInput(question) {
    return question.querySelector("input[type=radio]:checked") || question.querySelector("input[type=radio]");
  }

  function focusQuestion(question, options) {
    questionInput(question).focus(options);
  }

  function focusFirstQuestion() {
    if (questions.length) {
      focusQuestion(questions[0], { preventScroll: true });
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
    if (next) {
      focusQuestion(next);
    } else {
      submitButton.focus();
    }
  });

  function sameQuestions(next) {
    return (
      next.length === questions.length &&
      next.every(function (question, index) {
        return questions[index].getAttribute("data-key") === question.key;
      })
    );
  }

  function prefetch(urls) {
    // In the random order the server chose: the order of requests says nothing about sides.
    Array.prototype.forEach.call(document.querySelectorAll('link[rel="prefetch"]'), function (link) {
      link.parentNode.removeChild(link);
    });
    urls.forEach(function (url) {
      var link = document.createElement("link");
      link.rel = "prefetch";
      link.as = "image";
      link.href = url;
      document.head.appendChild(link);
    });
  }

  // The images fetched ahead are decoded ahead too, held in memory until the next pair is
  // shown: swapping them in is then a memory hit, not a fetch and a decode after Enter.
  var warmed = [];
  function warmPrefetched() {
    warmed = Array.prototype.map.call(document.querySelectorAll('link[rel="prefetch"]'), function (link) {
      var image = new window.Image();
      image.decoding = "async";
      image.src = link.href;
      if (image.decode) {
        image.decode().catch(function () {});
      }
      return image;
    });
  }

  // Show the pair the server answered with; its images were prefetched with the last one.
  function show(next) {
    if (!sameQuestions(next.questions)) {
      window.location.reload(); // the study's questions changed: take the page afresh
      return;
    }
    form.reset();
    if (skipForm) {
      skipForm.reset();
      skipForm.closest("details").open = false;
    }
    Array.prototype.forEach.call(document.querySelectorAll('input[name="assignment"]'), function (input) {
      input.value = next.assignment;
    });
    document.getElementById("prompt").textContent = next.prompt;
    Array.prototype.forEach.call(document.querySelectorAll(".pair img"), function (image, index) {
      image.src = next.images[index];
    });
    var original = document.getElementById("prompt-original-box");
    if (original) {
      original.hidden = !next.prompt_original;
      original.open = false;
      document.getElementById("prompt-original").textContent = next.prompt_original || "";
    }
    next.questions.forEach(function (question, index) {
      questions[index].querySelector("legend").textContent = question.text;
    });
    var progress = document.getElementById("rating-progress");
    progress.max = next.progress.quota;
    progress.value = next.progress.done;
    document.getElementById("rating-progress-text").textContent = next.progress.text;
    prefetch(next.prefetch);
    warmPrefetched();
    window.scrollTo(0, 0);
    focusFirstQuestion();
  }

  // While the server is briefly away (503, or no answer at all) a vote is sent again, with
  // growing waits: the server stores a vote once, and answers a resend of the same answers
  // with the next pair. The rater is told that it is retrying.
  var MAX_TRIES = 8;
  var retryText = {
    en: "Connection problem: trying again to send your answers…",
    es: "Problema de conexión: volvemos a intentar enviar sus respuestas…",
  };
  var statusLine = null;

  function retryStatus(text) {
    if (!statusLine) {
      statusLine = document.createElement("p");
      statusLine.className = "retry-status";
      statusLine.setAttribute("role", "status");
      statusLine.setAttribute("aria-live", "polite");
      form.parentNode.insertBefore(statusLine, form);
    }
    statusLine.textContent = text;
    statusLine.hidden = !text;
  }

  function retryDelay(tries, response) {
    var after = response ? parseInt(response.headers.get("Retry-After") || "", 10) : NaN;
    var backoff = Math.min(30, Math.pow(2, tries - 1));
    var seconds = isNaN(after) ? backoff : Math.max(after, backoff);
    return seconds * 1000 * (0.75 + Math.random() * 0.5);
  }

  // Post a form with fetch and show what comes back; on anything else unexpected, post it the
  // ordinary way, so the server's own page (a refusal, the next pair) is what the rater sees.
  function post(target, button) {
    if (busy) {
      return;
    }
    busy = true;
    button.disabled = true;
    var body = new FormData(target);
    var tries = 0;
    function fallBack() {
      retryStatus("");
      target.submit();
    }
    function retryLater(response) {
      if (tries >= MAX_TRIES) {
        fallBack();
        return;
      }
      var lang = (document.documentElement.lang || "en").slice(0, 2);
      retryStatus(retryText[lang] || retryText.en);
      window.setTimeout(attempt, retryDelay(tries, response));
    }
    function attempt() {
      tries += 1;
      window
        .fetch(target.action, {
          method: "POST",
          body: body,
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        })
        .then(
          function (response) {
            if (response.status === 503) {
              retryLater(response);
              return null;
            }
            var type = response.headers.get("Content-Type") || "";
            if (!response.ok || type.indexOf("application/json") !== 0) {
              throw new Error("not a next pair");
            }
            return response.json();
          },
          function () {
            retryLater(null); // no answer at all: the network or the server away
            return null;
          }
        )
        .then(function (next) {
          if (!next) {
            return;
          }
          retryStatus("");
          if (next.redirect) {
            window.location.assign(next.redirect);
            return;
          }
          show(next);
          busy = false;
          button.disabled = false;
        })
        .catch(fallBack);
    }
    attempt();
  }

  var canFetch = typeof window.fetch === "function" && typeof window.FormData === "function";
  form.addEventListener("submit", function (event) {
    if (canFetch) {
      event.preventDefault();
      post(form, submitButton);
    } else {
      // One vote per pair: a second press would only earn a "you already voted" page.
      submitButton.disabled = true;
    }
  });
  if (skipForm && canFetch) {
    skipForm.addEventListener("submit", function (event) {
      event.preventDefault();
      post(skipForm, skipForm.querySelector("button[type=submit]"));
    });
  }
  window.addEventListener("pageshow", function () {
    busy = false;
    submitButton.disabled = false;
  });

  // Both images enlarged, in a dialog: side by side on a wide screen, swiped on a phone (pinch
  // zooms). Opened by a tap or click on either image; Escape or Close shuts it, and focus goes
  // back to the image it was opened from.
  var compare = document.getElementById("compare");
  if (compare && typeof compare.showModal === "function") {
    var track = document.getElementById("compare-track");
    var opener = null;
    Array.prototype.forEach.call(document.querySelectorAll(".pair button.enlarge"), function (button) {
      button.addEventListener("click", function () {
        var shown = document.querySelectorAll(".pair img");
        Array.prototype.forEach.call(track.querySelectorAll("img"), function (image, index) {
          image.src = shown[index].src;
        });
        opener = button;
        compare.showModal();
        var figure = track.querySelectorAll("figure")[Number(button.getAttribute("data-index")) || 0];
        track.scrollLeft = figure ? figure.offsetLeft - track.offsetLeft : 0;
      });
    });
    document.getElementById("compare-close").addEventListener("click", function () {
      compare.close();
    });
    compare.addEventListener("close", function () {
      if (opener) {
        opener.focus();
      }
    });
  }

  // Where the images stay at the top of a narrow screen, a question scrolled to (by focus, by
  // Tab) stops below them, not under them.
  var stage = document.querySelector(".stage");
  var answering = document.querySelector(".answering");
  function keepQuestionsBelowImages() {
    var sticky = stage && answering && window.getComputedStyle(stage).position === "sticky";
    var above = false;
    if (sticky) {
      // Stacked (the images over the questions), not side by side.
      var a = stage.getBoundingClientRect();
      var b = answering.getBoundingClientRect();
      above = a.left < b.right && b.left < a.right;
    }
    document.documentElement.style.scrollPaddingTop = above ? stage.offsetHeight + 8 + "px" : "";
  }
  keepQuestionsBelowImages();
  window.addEventListener("resize", keepQuestionsBelowImages);

  warmPrefetched();

  // Ready for the keys at once, without scrolling the images out of view.
  if (questions.length && document.activeElement === document.body) {
    focusFirstQuestion();
  }
})();
