// Enter sends the next message (Shift+Enter: new line). Slider values: site.js.
(function () {
  const box = document.querySelector("form.send textarea");
  if (box) {
    box.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); box.form.requestSubmit(); }
    });
  }
})();

// The ratings can be saved once every reply of the newest turn has finished (done, stopped or failed):
// the replies stream in after the page loads, so the button follows their status.
(function () {
  const button = document.getElementById("rate-submit");
  if (!button) return;
  const wait = document.getElementById("rate-wait");
  function update() {
    const turns = document.querySelectorAll(".collect article.turn");
    const last = turns[turns.length - 1];
    if (!last) return;
    const replies = [...last.querySelectorAll(".bubble.model")];
    const ready = replies.length > 0 && replies.every(r => ["done", "stopped", "failed"].includes(r.dataset.status));
    button.disabled = !ready;
    if (wait) wait.hidden = ready;
  }
  new MutationObserver(update).observe(document.querySelector(".collect"),
    { subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"] });
  update();
})();
