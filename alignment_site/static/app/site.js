// On every page: a 1-100 slider starts unset (no name, so the form sends nothing for it) and is set by the
// person's first touch, click or key on it; from then on the <output> beside it shows its value. A click that
// lands on the value the unset slider happens to hold still counts, hence pointerup and keyup as well as input.
(function () {
  function set(el) {
    if (el.type !== "range") return;
    if (el.dataset.name && !el.name) {
      el.name = el.dataset.name;
      el.classList.remove("unset");
      el.removeAttribute("aria-valuetext");
      const row = el.closest(".slider-row");
      if (row) row.classList.remove("unset");
    }
    const out = document.querySelector('output[for="' + el.id + '"]');
    if (out && el.name) out.textContent = el.value;
  }
  document.addEventListener("input", function (e) { set(e.target); });
  document.addEventListener("change", function (e) { set(e.target); });
  document.addEventListener("pointerup", function (e) { set(e.target); });
  document.addEventListener("keyup", function (e) {
    if (["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"].includes(e.key)) {
      set(e.target);
    }
  });
})();

// Every htmx request that fails says so where the person is looking: beside the form or control that sent it.
// 422 answers carry the form with its errors and are shown as they are; any other failure (a refusal, a
// server error, no connection) puts its message in an alert after the control, cleared by the next success.
(function () {
  if (!window.htmx) return;
  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "422", swap: true, error: false },
    { code: "[45]..", swap: false, error: true },
    { code: "...", swap: false },
  ];
  const plain = {
    403: "You are not allowed to do this, or your session ended: reload the page and log in again.",
    404: "This is no longer here: reload the page.",
    413: "That is too large to send.",
  };
  function messageOf(xhr) {
    const type = (xhr.getResponseHeader("Content-Type") || "").toLowerCase();
    const body = (xhr.responseText || "").trim();
    if (body && type.startsWith("text/plain") && body.length <= 600) return body;
    if (body && type.startsWith("text/html") && body.length <= 2000 && !/<html/i.test(body)) {
      const text = new DOMParser().parseFromString(body, "text/html").body.textContent.trim();
      if (text) return text;
    }
    if (plain[xhr.status]) return plain[xhr.status];
    return "Something went wrong on the server (error " + xhr.status + "). Try again; if it keeps happening, " +
      "tell the study's staff.";
  }
  function anchorOf(elt) {
    return (elt && (elt.closest("form") || elt)) || document.querySelector("main") || document.body;
  }
  function show(elt, text) {
    const anchor = anchorOf(elt);
    let box = anchor.nextElementSibling;
    if (!box || !box.classList.contains("request-error")) {
      box = document.createElement("p");
      box.className = "error request-error";
      box.setAttribute("role", "alert");
      anchor.insertAdjacentElement("afterend", box);
    }
    box.textContent = text;
  }
  document.addEventListener("htmx:responseError", function (e) { show(e.detail.elt, messageOf(e.detail.xhr)); });
  document.addEventListener("htmx:sendError", function (e) {
    show(e.detail.elt, "The server could not be reached: check your connection and try again.");
  });
  document.addEventListener("htmx:timeout", function (e) {
    show(e.detail.elt, "The server took too long to answer: try again in a moment.");
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    if (!e.detail.successful) return;
    const box = anchorOf(e.detail.elt).nextElementSibling;
    if (box && box.classList.contains("request-error")) box.remove();
  });
})();
