// On every page: each 1-100 slider shows its value in the <output> beside it (also in swapped-in parts).
(function () {
  document.addEventListener("input", function (e) {
    const el = e.target;
    if (el.type !== "range") return;
    const out = document.querySelector('output[for="' + el.id + '"]');
    if (out) out.textContent = el.value;
  });
})();
