/* Charts for /stats, drawn with the vendored Chart.js (static/vendor/chartjs).
   Progressive enhancement: every figure is already in the page's tables; this
   file only adds pictures. It reads the figures from the JSON block the page
   embeds (no inline script, so the CSP can stay "script-src 'self'"). */
(function () {
  "use strict";
  var source = document.getElementById("stats-data");
  if (!source || typeof window.Chart === "undefined") { return; }
  var payload = JSON.parse(source.textContent);
  var stats = payload.stats;
  var labels = stats.months.map(function (m) { return payload.month_labels[m] || m; });
  var colors = {
    unknown: "#6a6af4", seen: "#18753c", noshow: "#ce0500", excused: "#b34000", revoked: "#666666",
    link: "#000091", sms: "#18753c", agent: "#b34000", api: "#666666",
    smsSent: "#000091", smsDelivered: "#6a6af4", emailSent: "#18753c", emailDelivered: "#6fcf97"
  };
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  // The page's own font (Marianne with BRAND=etat, the system's otherwise) and DSFR's
  // text colour, so that the charts read like the rest of the page.
  var bodyStyle = window.getComputedStyle(document.body);
  Chart.defaults.font.family = bodyStyle.fontFamily || "system-ui, Arial, sans-serif";
  Chart.defaults.font.size = 14;
  Chart.defaults.color = bodyStyle.color || "#161616";
  Chart.defaults.plugins.legend.position = "bottom";
  Chart.defaults.maintainAspectRatio = false;
  if (reduceMotion) { Chart.defaults.animation = false; }
  document.documentElement.classList.add("charts");

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) { new Chart(canvas, config); }
  }
  function percent(value) {
    return value === null ? null : Math.round(value * 1000) / 10;
  }

  draw("chart-noshow", {
    type: "line",
    data: {
      labels: labels,
      datasets: [{
        label: "Taux de lapins (%)",
        data: stats.rdvs.by_month.map(function (m) { return percent(m.noshow_rate); }),
        borderColor: colors.noshow, backgroundColor: colors.noshow, spanGaps: true, tension: 0.2
      }]
    },
    options: {
      scales: { y: { beginAtZero: true, suggestedMax: 30, ticks: { callback: function (v) { return v + " %"; } } } },
      plugins: { tooltip: { callbacks: { label: function (c) { return c.parsed.y + " %"; } } } }
    }
  });

  draw("chart-rdvs", {
    type: "bar",
    data: {
      labels: labels,
      datasets: ["seen", "noshow", "excused", "revoked", "unknown"].map(function (s) {
        return {
          label: payload.status_labels[s],
          data: stats.rdvs.by_month.map(function (m) { return m[s]; }),
          backgroundColor: colors[s]
        };
      })
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }
  });

  draw("chart-cancellations", {
    type: "bar",
    data: {
      labels: labels,
      datasets: ["link", "sms", "agent", "api"].map(function (v) {
        return {
          label: payload.via_labels[v],
          data: stats.cancellations.by_month.map(function (m) { return m[v]; }),
          backgroundColor: colors[v]
        };
      })
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }
  });

  draw("chart-messages", {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "SMS envoyés", data: stats.messages.by_month.map(function (m) { return m.sms.sent; }), backgroundColor: colors.smsSent },
        { label: "SMS reçus", data: stats.messages.by_month.map(function (m) { return m.sms.delivered; }), backgroundColor: colors.smsDelivered },
        { label: "E-mails envoyés", data: stats.messages.by_month.map(function (m) { return m.email.sent; }), backgroundColor: colors.emailSent },
        { label: "E-mails reçus", data: stats.messages.by_month.map(function (m) { return m.email.delivered; }), backgroundColor: colors.emailDelivered }
      ]
    },
    options: { scales: { y: { beginAtZero: true } } }
  });
})();
