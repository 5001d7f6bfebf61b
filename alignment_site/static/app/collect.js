// Show each slider's value beside it; Enter sends the next message (Shift+Enter: new line).
(function () {
  document.addEventListener("input", function (e) {
    const el = e.target;
    if (el.type !== "range") return;
    const out = document.querySelector('output[for="' + el.id + '"]');
    if (out) out.textContent = el.value;
  });
  const box = document.querySelector("form.send textarea");
  if (box) {
    box.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); box.form.requestSubmit(); }
    });
  }
})();
