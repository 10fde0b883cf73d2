/* nla-forensics triage report. Data comes from the JSON block above; the DOM is built with
   textContent only (never innerHTML with data): training text is hostile input. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var byId = {};
  data.clusters.forEach(function (c) { byId[String(c.cluster_id)] = c; });
  var hasLoose = data.rows.some(function (r) { return r.c === null; });
  var ALL = "all", LOOSE = "none";
  var state = { sel: data.clusters.length ? String(data.clusters[0].cluster_id) : ALL, q: "" };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // ---------------------------------------------------------------- cluster selector
  var sel = document.getElementById("cluster-select");
  function opt(value, label) { var o = el("option", null, label); o.value = value; sel.appendChild(o); }
  data.clusters.forEach(function (c) {
    opt(String(c.cluster_id), "#" + c.rank + "  " + c.label + "  (" + c.size + " rows)");
  });
  if (hasLoose) opt(LOOSE, "Findings outside clusters");
  opt(ALL, "All rows in this page");

  // lower-cased search text per row, computed once
  data.rows.forEach(function (r) {
    r._h = [r.id, r.p, r.r, r.pl, r.rl, r.m].join("\u0001").toLowerCase();
  });

  function cell(text, cls) {
    var td = el("td", cls);
    var d = el("div", "clip", text);
    d.title = "click to expand";
    d.addEventListener("click", function () { d.classList.toggle("open"); });
    td.appendChild(d);
    return td;
  }

  var tbody = document.querySelector("#rows tbody");
  function renderRows() {
    var terms = state.q.toLowerCase().split(/\s+/).filter(Boolean);
    var pool = data.rows.filter(function (r) {
      if (state.sel === ALL) return true;
      if (state.sel === LOOSE) return r.c === null;
      return String(r.c) === state.sel;
    });
    var shown = pool.filter(function (r) {
      for (var i = 0; i < terms.length; i++) if (r._h.indexOf(terms[i]) < 0) return false;
      return true;
    });
    var frag = document.createDocumentFragment();
    shown.forEach(function (r, i) {
      var tr = el("tr");
      tr.setAttribute("data-c", r.c === null ? "" : String(r.c));
      var c = r.c === null ? null : byId[String(r.c)];
      var td0 = el("td", "n");
      var dot = el("span", "dot"); dot.style.background = c ? c.colour : "#dde1e7";
      td0.appendChild(dot); td0.appendChild(document.createTextNode(String(i + 1)));
      tr.appendChild(td0);
      tr.appendChild(el("td", "rid", r.id));
      tr.appendChild(el("td", "num", r.s === null ? "–" : r.s.toFixed(3)));
      tr.appendChild(el("td", "lang", (r.pl || "?") + " → " + (r.rl || "?")));
      tr.appendChild(cell(r.p, "txt"));
      tr.appendChild(cell(r.r, "txt"));
      tr.appendChild(el("td", "meta", r.m));
      frag.appendChild(tr);
    });
    tbody.textContent = "";
    tbody.appendChild(frag);
    document.getElementById("count").textContent = shown.length + " of " + pool.length + " rows shown";
    var title = document.getElementById("rows-title");
    var note = document.getElementById("rows-note");
    var sqlEl = document.getElementById("rows-sql");
    if (state.sel === ALL) {
      title.textContent = "· every row embedded in this page";
      note.textContent = "The page holds up to 250 top-scored rows per cluster; the SQL gives every row.";
      sqlEl.textContent = data.sql.clusters;
    } else if (state.sel === LOOSE) {
      title.textContent = "· findings outside clusters";
      note.textContent = data.counts.unclustered_findings + " findings are in no cluster.";
      sqlEl.textContent = data.sql.unclustered;
    } else {
      var cc = byId[state.sel];
      title.textContent = "· cluster #" + cc.rank + ": " + cc.label;
      note.textContent = pool.length < cc.members
        ? "Showing the " + pool.length + " top-scored of " + cc.members + " members; the SQL below returns all of them."
        : "All " + cc.members + " members of this cluster.";
      sqlEl.textContent = cc.sql;
    }
  }

  // ---------------------------------------------------------------- selection everywhere
  var svg = document.getElementById("map");
  function select(v) {
    state.sel = v;
    sel.value = v;
    document.querySelectorAll(".cluster").forEach(function (a) {
      a.classList.toggle("selected", a.getAttribute("data-c") === v);
    });
    document.querySelectorAll(".lg[data-c]").forEach(function (a) {
      a.classList.toggle("selected", a.getAttribute("data-c") === v);
    });
    if (svg) {
      var focus = v !== ALL;
      svg.classList.toggle("focus", focus);
      svg.querySelectorAll("circle").forEach(function (c) {
        var dc = c.getAttribute("data-c");
        c.classList.toggle("on", focus && (v === LOOSE ? dc === "" : dc === v));
      });
    }
    renderRows();
  }
  sel.addEventListener("change", function () { select(sel.value); });
  var filter = document.getElementById("filter");
  filter.addEventListener("input", function () { state.q = filter.value; renderRows(); });
  document.querySelectorAll(".cluster, .lg[data-c]").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      if (ev.target.closest && ev.target.closest("details")) return;
      select(a.getAttribute("data-c"));
      if (a.classList.contains("cluster")) {
        document.getElementById("samples").scrollIntoView({ behavior: "smooth", block: "start" });
      }
    });
    a.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") select(a.getAttribute("data-c"));
    });
  });

  // ---------------------------------------------------------------- map tooltips
  var tip = document.getElementById("tip");
  if (svg && tip) {
    svg.addEventListener("mousemove", function (ev) {
      var t = ev.target;
      if (!t || t.tagName.toLowerCase() !== "circle") { tip.hidden = true; return; }
      var p = data.points[+t.getAttribute("data-i")];
      if (!p) return;
      var c = p[2] === null ? null : byId[String(p[2])];
      tip.textContent = "";
      tip.appendChild(el("b", null, c ? ("#" + c.rank + " " + c.label)
        : (p[2] === null ? "finding outside clusters" : "lower-ranked cluster " + p[2])));
      tip.appendChild(el("div", "muted", p[3]));
      tip.appendChild(el("div", null, p[4]));
      var box = svg.getBoundingClientRect();
      tip.style.left = Math.min(ev.clientX - box.left + 14, box.width - 260) + "px";
      tip.style.top = (ev.clientY - box.top + 12) + "px";
      tip.hidden = false;
    });
    svg.addEventListener("mouseleave", function () { tip.hidden = true; });
    svg.addEventListener("click", function (ev) {
      var t = ev.target;
      if (t && t.tagName.toLowerCase() === "circle") select(t.getAttribute("data-c") || LOOSE);
    });
  }

  select(state.sel);
  document.body.setAttribute("data-ready", "1");
})();
