// Charts of a training run: drawn from the JSON embedded in the page, then
// refreshed from the metrics endpoint every few seconds while the run is live.
(function () {
  // Choosing what colours the user map reloads the page with that choice.
  const colour = document.getElementById("color");
  if (colour) colour.addEventListener("change", function () { colour.form.submit(); });
  const holder = document.getElementById("charts");
  if (!holder || !window.Chart) return;
  const palette = ["#2255cc", "#d0462c", "#1a9b6c", "#8a4fd0", "#c48a00", "#607080"];
  // chart name -> [[series key, label], ...]; "eval/..." keys come from the eval log.
  const CHARTS = {
    loss: [["loss", "train"], ["eval/loss", "eval"]],
    margins: [["rewards/margins", "train"], ["eval/rewards/margins", "eval"]],
    accuracies: [["rewards/accuracies", "train"], ["eval/rewards/accuracies", "eval"]],
    rewards: [["rewards/chosen", "chosen"], ["rewards/rejected", "rejected"],
              ["eval/rewards/chosen", "eval chosen"], ["eval/rewards/rejected", "eval rejected"]],
    logps: [["logps/chosen", "chosen"], ["logps/rejected", "rejected"]],
    grad_norm: [["grad_norm", "grad norm"]],
    lr: [["learning_rate/lora", "LoRA"], ["learning_rate/user", "user model"], ["learning_rate/mixture", "mixture weights"]],
    pairs_speed: [["examples_per_second", "pairs/s"]],
    tokens_speed: [["tokens_per_second", "tokens/s"]],
  };
  const charts = {};

  function points(series, key) {
    const source = key.startsWith("eval/") ? series.eval : series.train;
    if (!source || !source[key]) return [];
    return source.step.map((s, i) => ({x: s, y: source[key][i]})).filter(p => p.y !== null && p.y !== undefined);
  }

  function diagPoints(series, key, square) {
    const d = series.diag;  // logged live by the worker as it computes them
    if (!d || !d[key]) return [];
    return d.step.map((s, i) => ({x: s, y: d[key][i]})).filter(p => p.y !== null && p.y !== undefined)
      .map(p => ({x: p.x, y: square ? p.y * p.y : p.y}));
  }

  function datasetsFor(name, data) {
    if (name === "entangle") {
      return [["entanglement/inner", "⟨g_w, g_l⟩", false], ["entanglement/grad_norm_chosen", "‖g_w‖²", true],
              ["entanglement/grad_norm_rejected", "‖g_l‖²", true]]
        .map(([k, label, sq], i) => ({label, data: diagPoints(data.series, k, sq), borderColor: palette[i]}));
    }
    if (name === "regimes") {
      return [["entanglement/share_chosen_down", "chosen would fall"], ["entanglement/share_rejected_up", "rejected would rise"]]
        .map(([k, label], i) => ({label, data: diagPoints(data.series, k, false), borderColor: palette[i]}));
    }
    return CHARTS[name].map(([key, label], i) => ({
      label, data: points(data.series, key), borderColor: palette[i],
      showLine: !key.startsWith("eval/"), pointRadius: key.startsWith("eval/") ? 5 : 0,
    }));
  }

  function draw(data) {
    document.querySelectorAll("canvas[data-chart]").forEach(canvas => {
      const name = canvas.dataset.chart;
      const datasets = datasetsFor(name, data);
      if (charts[name]) {
        charts[name].data.datasets.forEach((d, i) => { d.data = datasets[i].data; });
        charts[name].update("none");
        return;
      }
      charts[name] = new Chart(canvas, {
        type: "scatter",
        data: {datasets: datasets.map(d => ({...d, showLine: d.showLine !== false, borderWidth: 2,
                                                  backgroundColor: d.borderColor}))},
        options: {animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
                  scales: {x: {title: {display: true, text: "step"}}},
                  plugins: {legend: {labels: {boxWidth: 12}}}},
      });
    });
  }

  draw(JSON.parse(document.getElementById("run-series").textContent));

  if (holder.dataset.live === "1") {
    const timer = setInterval(async () => {
      const response = await fetch(holder.dataset.metricsUrl, {headers: {"Accept": "application/json"}});
      if (!response.ok) return;
      const data = await response.json();
      draw(data);
      if (data.status !== "queued" && data.status !== "running") clearInterval(timer);
    }, 3000);
  }

  // The user map: one point per user, coloured by the chosen attribute.
  const mapCanvas = document.getElementById("map-canvas");
  if (mapCanvas) {
    const pts = JSON.parse(document.getElementById("map-points").textContent);
    const labels = [...new Set(pts.map(p => p.label))];
    new Chart(mapCanvas, {
      type: "scatter",
      data: {datasets: labels.map((label, i) => ({
        label, backgroundColor: label === "generic user" ? "#000" : palette[i % palette.length],
        pointRadius: label === "generic user" ? 7 : 5,
        data: pts.filter(p => p.label === label).map(p => ({x: p.x, y: p.y, user: p.user_id})),
      }))},
      options: {animation: false, maintainAspectRatio: false, plugins: {tooltip: {callbacks: {
        label: ctx => `${ctx.raw.user} (${ctx.dataset.label})`}}}},
    });
  }

  // Sortable per-user table: click a header.
  document.querySelectorAll("table.sortable th[data-sort]").forEach((th, col) => {
    th.tabIndex = 0;
    th.setAttribute("role", "button");
    const sort = () => {
      const body = th.closest("table").tBodies[0];
      const asc = th.dataset.dir !== "asc";
      th.dataset.dir = asc ? "asc" : "desc";
      const value = row => row.cells[col].textContent.trim();
      const rows = [...body.rows].sort((a, b) => {
        const [x, y] = [value(a), value(b)];
        const cmp = th.dataset.sort === "num" ? (parseFloat(x) || -1) - (parseFloat(y) || -1) : x.localeCompare(y);
        return asc ? cmp : -cmp;
      });
      rows.forEach(r => body.appendChild(r));
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", e => { if (e.key === "Enter") sort(); });
  });
})();
