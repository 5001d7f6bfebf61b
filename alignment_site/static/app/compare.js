(function () {
  if (!window.Chart) return;
  const data = JSON.parse(document.getElementById("cmp-series").textContent);
  const line = (run, key) => {
    const t = data[run].train || {step: []};
    return (t[key] || []).map((y, i) => ({x: t.step[i], y})).filter(p => p.y !== null);
  };
  [["cmp-loss", "loss"], ["cmp-acc", "rewards/accuracies"]].forEach(([id, key]) => {
    new Chart(document.getElementById(id), {type: "scatter", data: {datasets: [
      {label: "A", data: line("a", key), showLine: true, borderColor: "#2255cc", pointRadius: 0},
      {label: "B", data: line("b", key), showLine: true, borderColor: "#d0462c", pointRadius: 0},
    ]}, options: {animation: false, maintainAspectRatio: false}});
  });
})();
