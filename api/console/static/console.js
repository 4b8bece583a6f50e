// The console's behaviour beyond htmx: draw the dashboard's charts with
// Chart.js from the JSON the page carries, and sign in from a console link
// (its token travels in the URL fragment, which is never sent to a server).
(function () {
  'use strict';

  var palette = ['#4f46e5', '#f59e0b', '#059669', '#db2777', '#0891b2', '#7c3aed', '#65a30d', '#dc2626', '#0d9488', '#ea580c'];

  function chart(id, config) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    var old = Chart.getChart(canvas);
    if (old) old.destroy();
    new Chart(canvas, config);
  }

  function chartDefaults() {
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = '#5b6475';
  }

  function drawCharts() {
    var el = document.getElementById('chart-data');
    if (!el || typeof Chart === 'undefined') return;
    var d = JSON.parse(el.textContent);
    chartDefaults();

    chart('chart-points', {
      type: 'bar',
      data: {
        labels: d.months,
        datasets: [
          { label: 'Points issued', data: d.issued, backgroundColor: palette[0], yAxisID: 'y', order: 2 },
          { label: 'Points redeemed', data: d.redeemed, backgroundColor: palette[1], yAxisID: 'y', order: 2 },
          {
            type: 'line', label: 'Redemption rate (%)', yAxisID: 'rate', order: 1, spanGaps: true,
            data: d.rate.map(function (r) { return r === null ? null : Number(r); }),
            borderColor: palette[2], backgroundColor: palette[2], cubicInterpolationMode: 'monotone'
          }
        ]
      },
      options: {
        interaction: { mode: 'index', intersect: false },
        scales: {
          y: { beginAtZero: true, title: { display: true, text: 'points' } },
          rate: {
            position: 'right', beginAtZero: true, grid: { drawOnChartArea: false },
            ticks: { callback: function (v) { return v + '%'; } }
          }
        }
      }
    });

    chart('chart-tiers', {
      type: 'doughnut',
      data: { labels: d.tiers.labels, datasets: [{ label: 'Members', data: d.tiers.values, backgroundColor: palette }] },
      options: { plugins: { legend: { position: 'bottom' } } }
    });

    chart('chart-segments', {
      type: 'bar',
      data: { labels: d.segments.labels, datasets: [{ label: 'Members', data: d.segments.values, backgroundColor: palette[5] }] },
      options: { indexAxis: 'y', plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } }
    });

    chart('chart-churn', {
      type: 'bar',
      data: { labels: d.churn.labels, datasets: [{ label: 'Members', data: d.churn.values, backgroundColor: palette[7], barPercentage: 1, categoryPercentage: 0.95 }] },
      options: {
        plugins: { legend: { display: false } },
        scales: { x: { title: { display: true, text: 'churn risk' } }, y: { beginAtZero: true, title: { display: true, text: 'members' } } }
      }
    });
  }

  function drawExperience() {
    if (typeof Chart !== 'undefined') chartDefaults();
    var el = document.getElementById('cx-data');
    if (el && typeof Chart !== 'undefined') {
      var d = JSON.parse(el.textContent);
      var n = function (l) { return l.map(function (v) { return v === null ? null : Number(v); }); };
      chart('chart-cx', {
        type: 'line',
        data: {
          labels: d.months,
          datasets: [
            { label: 'NPS', data: n(d.nps), yAxisID: 'nps', borderColor: palette[0], backgroundColor: palette[0], spanGaps: true },
            { label: 'CSAT (1–5)', data: n(d.csat), yAxisID: 'score', borderColor: palette[2], backgroundColor: palette[2], spanGaps: true },
            { label: 'CES (1–7)', data: n(d.ces), yAxisID: 'score', borderColor: palette[1], backgroundColor: palette[1], spanGaps: true }
          ]
        },
        options: {
          interaction: { mode: 'index', intersect: false },
          scales: {
            nps: { axis: 'y', position: 'left', min: -100, max: 100, title: { display: true, text: 'NPS' } },
            score: { axis: 'y', position: 'right', min: 1, max: 7, grid: { drawOnChartArea: false }, title: { display: true, text: 'score' } }
          }
        }
      });
      chart('chart-cx-stores', {
        type: 'bar',
        data: { labels: d.stores, datasets: [{ label: 'NPS', data: n(d.store_nps), backgroundColor: palette[4] }] },
        options: { plugins: { legend: { display: false } }, scales: { y: { min: -100, max: 100 } } }
      });
    }
    var cl = document.getElementById('clv-data');
    if (cl && typeof Chart !== 'undefined') {
      var c = JSON.parse(cl.textContent);
      chart('chart-clv', {
        type: 'bar',
        data: { labels: c.labels, datasets: [{ label: 'Members', data: c.values, backgroundColor: palette[5], barPercentage: 1, categoryPercentage: 0.95 }] },
        options: {
          plugins: { legend: { display: false } },
          scales: { x: { title: { display: true, text: 'CLV' } }, y: { beginAtZero: true, title: { display: true, text: 'members' } } }
        }
      });
    }
  }

  function signInFromLink() {
    var form = document.getElementById('login-form');
    var m = /^#token=(.+)$/.exec(window.location.hash);
    if (!form || !m || form.dataset.sent) return;
    form.dataset.sent = '1';
    history.replaceState(null, '', window.location.pathname);
    form.querySelector('[name=token]').value = decodeURIComponent(m[1]);
    form.submit();
  }

  function onLoad() {
    signInFromLink();
    drawCharts();
    drawExperience();
  }

  window.addEventListener('hashchange', signInFromLink);
  if (window.htmx) {
    htmx.onLoad(onLoad);
  } else {
    document.addEventListener('DOMContentLoaded', onLoad);
  }
})();
