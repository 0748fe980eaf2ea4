// Steward portal: small progressive enhancements. Every form works without this file.
//  - data-confirm on a form: ask in a dialog, then post with `confirmed` (without script
//    the server asks on a page of its own);
//  - data-enhance="ROW-ID" on a form: post it in the background and replace that element
//    and the message area from the page the server answers with (no full reload);
//  - data-copy="INPUT-ID" on a button: copy the input's text (the button is hidden
//    until script shows it).
"use strict";
(function () {
  function confirmedInput(form) {
    if (!form.querySelector('input[name="confirmed"]')) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = "confirmed";
      input.value = "1";
      form.appendChild(input);
    }
  }

  function replaceFrom(doc, id) {
    var fresh = doc.getElementById(id);
    var stale = document.getElementById(id);
    if (fresh && stale) {
      stale.replaceWith(document.importNode(fresh, true));
      return true;
    }
    return false;
  }

  function enhance(form, targetId) {
    var button = form.querySelector("button");
    if (button) { button.disabled = true; }
    fetch(form.action, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
      redirect: "follow"
    }).then(function (response) {
      return response.text().then(function (html) { return { response: response, html: html }; });
    }).then(function (result) {
      var doc = new DOMParser().parseFromString(result.html, "text/html");
      var replaced = result.response.ok && replaceFrom(doc, targetId);
      replaceFrom(doc, "flash-area");
      if (!replaced) { window.location.assign(result.response.url); }
    }).catch(function () {
      form.submit();
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    var question = form.getAttribute("data-confirm");
    if (question) {
      if (!window.confirm(question)) { event.preventDefault(); return; }
      confirmedInput(form);
    }
    var target = form.getAttribute("data-enhance");
    if (target && window.fetch && window.DOMParser) {
      event.preventDefault();
      enhance(form, target);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var input = document.getElementById(button.getAttribute("data-copy"));
      if (!input || !navigator.clipboard) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(input.value).then(function () {
          button.textContent = "Copied";
        }, function () {
          input.select();
        });
      });
    });
  });
})();
