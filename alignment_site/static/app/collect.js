// Enter sends the next message (Shift+Enter: new line). Slider values: site.js.
(function () {
  const box = document.querySelector("form.send textarea");
  if (box) {
    box.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); box.form.requestSubmit(); }
    });
  }
})();
