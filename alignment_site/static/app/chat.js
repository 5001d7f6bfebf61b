// Enter sends, Shift+Enter adds a line; keep the newest turn in view.
(function () {
  const box = document.getElementById("message");
  const turns = document.getElementById("turns");
  if (box) {
    box.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        box.form.requestSubmit();
      }
    });
  }
  function scrollDown() { window.scrollTo(0, document.body.scrollHeight); }
  document.body.addEventListener("htmx:afterSwap", function () {
    const hint = document.getElementById("empty-hint");
    if (hint && turns && turns.querySelector(".turn")) hint.remove();
    scrollDown();
  });
  document.body.addEventListener("htmx:sseMessage", scrollDown);
  // A sent message clears the composer and any earlier error; a refused one (422: its reason is swapped
  // into #send-error) keeps the text so it can be shortened.
  document.body.addEventListener("htmx:afterRequest", function (e) {
    if (box && e.detail.elt === box.form && e.detail.successful && e.detail.xhr.status < 300) {
      box.form.reset();
      const error = document.getElementById("send-error");
      if (error) error.textContent = "";
    }
  });
})();
