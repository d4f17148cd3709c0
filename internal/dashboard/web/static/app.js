// vmssd dashboard: live heatmap by server-sent events, cell selection and
// keyboard navigation. No framework; the pages work without it (forms post
// and the server redirects back).
(function () {
  'use strict';
  var stats = { heatmap: 0, rollout: 0, last: 0 };
  window.vmssdDashboard = stats;

  function replace(el, html) {
    var active = document.activeElement;
    var focusId = active && el.contains(active) ? active.id : '';
    el.innerHTML = html;
    if (focusId) {
      var again = document.getElementById(focusId);
      if (again) { again.focus(); }
    }
    markSelected();
  }

  function markSelected() {
    var input = document.getElementById('instance');
    if (!input) { return; }
    var cells = document.querySelectorAll('#grid .cell');
    for (var i = 0; i < cells.length; i++) {
      cells[i].setAttribute('aria-pressed', cells[i].dataset.id === input.value ? 'true' : 'false');
    }
  }

  function stream() {
    var hm = document.getElementById('heatmap');
    if (!hm || !hm.dataset.stream || !window.EventSource) { return; }
    var es = new EventSource(hm.dataset.stream);
    es.addEventListener('heatmap', function (e) {
      replace(hm, e.data);
      stats.heatmap++; stats.last = Date.now();
    });
    es.addEventListener('rollout', function (e) {
      var ro = document.getElementById('rollout');
      if (ro) { replace(ro, e.data); }
      stats.rollout++;
    });
  }

  document.addEventListener('click', function (e) {
    var cell = e.target.closest ? e.target.closest('#grid .cell') : null;
    if (!cell) { return; }
    var input = document.getElementById('instance');
    if (input) { input.value = cell.dataset.id; markSelected(); }
    var boot = document.getElementById('bootlog-instance');
    if (boot) { boot.value = cell.dataset.id; }
  });

  document.addEventListener('keydown', function (e) {
    var cell = e.target;
    if (!cell.classList || !cell.classList.contains('cell') || !cell.closest('#grid')) { return; }
    var cells = Array.prototype.slice.call(document.querySelectorAll('#grid .cell'));
    var i = cells.indexOf(cell);
    var next = null;
    if (e.key === 'ArrowRight') { next = cells[i + 1]; }
    if (e.key === 'ArrowLeft') { next = cells[i - 1]; }
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      var tr = cell.closest('tr');
      var sib = e.key === 'ArrowDown' ? tr.nextElementSibling : tr.previousElementSibling;
      if (sib) {
        var col = Array.prototype.indexOf.call(tr.children, cell.closest('td'));
        var td = sib.children[col];
        next = (td && td.querySelector('.cell')) || sib.querySelector('.cell');
      }
    }
    if (next) { next.focus(); e.preventDefault(); }
  });

  document.addEventListener('DOMContentLoaded', function () {
    var pick = document.getElementById('pick');
    if (pick) {
      pick.addEventListener('change', function () { window.location.href = '/ui/set?' + pick.value; });
    }
    stream();
  });
})();
