// STREAMER dashboard: one use case at a time, fed by server-sent events from api/stream (a
// snapshot every 2 s: the whole window first, then only new buckets), or by polling
// api/snapshot when EventSource is missing or keeps failing (?transport=poll forces it).
// Charts are uPlot (vendored, static/vendor/uplot). State for tests is on window.dashboard.
"use strict";

(() => {
  const VIEWS = ["cumulative", "window", "batch"];
  const POLL_MS = 2000;
  const SSE_FAILURES_BEFORE_POLLING = 3;
  const PALETTE = ["#2f6fdb", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#4d5966",
    "#c0392b", "#27ae60", "#d35400", "#16a085", "#7f8c8d", "#2c3e50"];
  const MARKERS = {  // event kind -> [colour, dash]
    alert_started: ["#d33a2c", []],
    alert_stopped: ["#1a9b55", []],
    retrain: ["#e08a00", [5, 4]],
    model: ["#2f6fdb", [2, 3]],
  };

  const params = new URLSearchParams(location.search);
  const $ = (selector) => document.querySelector(selector);

  const state = {
    usecase: null,
    windowS: Number($("#window").value),
    now: Date.now(),
    cursor: null,
    metrics: emptyMetrics(),
    throughput: [],
    throughputSource: null,
    p50: [],
    p95: [],
    models: {},  // leaderboard chart: model -> [[t, v], ...] (window view of one metric)
    modelsMetric: null,
    events: [],
    eventKeys: new Set(),
    generation: 0,  // bumped on every (re)connection: stale answers are dropped
    source: null,
    pollTimer: null,
    sseFailures: 0,
  };
  const colours = new Map();
  const charts = {};

  // What tests (and curious users, in the console) can read.
  const dashboard = (window.dashboard = {
    usecase: null, mode: null, updates: 0, full: 0, streams: 0, points: {}, markers: 0,
    model: null, services: [], leaderboard: null, rounds: [], reliability: null,
  });

  function emptyMetrics() {
    return Object.fromEntries(VIEWS.map((view) => [view, {}]));
  }

  function api(path, query = {}) {
    const url = new URL(`api/${path}`, document.baseURI);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    return url;
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const magnitude = Math.abs(value);
    if (magnitude >= 1000) return Math.round(value).toLocaleString("en");
    if (magnitude === 0) return "0";
    return String(Number(value.toPrecision(4)));
  }

  // Axis ticks get 56 px: large values in k/M (8,862,072 ms would be cut to "62,072").
  function tick(value) {
    const magnitude = Math.abs(value);
    if (magnitude >= 1e6) return `${Number((value / 1e6).toPrecision(3))}M`;
    if (magnitude >= 1e4) return `${Number((value / 1e3).toPrecision(3))}k`;
    return fmt(value);
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    return `${Math.round(seconds / 3600)} h ago`;
  }

  function colour(name) {
    if (!colours.has(name)) colours.set(name, PALETTE[colours.size % PALETTE.length]);
    return colours.get(name);
  }

  // ---- series ---------------------------------------------------------------------------

  // Merge [time, value] points into a sorted series: same time replaces, others insert.
  function merge(series, points) {
    for (const [t, v] of points || []) {
      const n = series.length;
      if (n === 0 || t > series[n - 1][0]) { series.push([t, v]); continue; }
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (series[mid][0] < t) lo = mid + 1; else hi = mid;
      }
      if (lo < n && series[lo][0] === t) series[lo][1] = v; else series.splice(lo, 0, [t, v]);
    }
    return series;
  }

  function trim(series, from) {
    let i = 0;
    while (i < series.length && series[i][0] < from) i += 1;
    if (i) series.splice(0, i);
  }

  // uPlot wants one x array shared by every series: the union of times, null where missing.
  function align(seriesList) {
    const times = [...new Set(seriesList.flatMap((series) => series.map((p) => p[0])))];
    times.sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    const ys = seriesList.map((series) => {
      const y = new Array(times.length).fill(null);
      for (const [t, v] of series) y[index.get(t)] = v;
      return y;
    });
    return [times.map((t) => t / 1000), ...ys];
  }

  function resetData() {
    state.metrics = emptyMetrics();
    state.throughputSource = null;
    state.throughput = [];
    state.p50 = [];
    state.p95 = [];
    state.models = {};
    state.modelsMetric = null;
    state.events = [];
    state.eventKeys = new Set();
    state.cursor = null;
  }

  // ---- charts ---------------------------------------------------------------------------

  function markersPlugin(chart) {
    return {
      hooks: {
        draw: [(u) => {
          const { left, top, width, height } = u.bbox;
          const ctx = u.ctx;
          const clamp = (x) => Math.min(Math.max(x, left), left + width);
          const xOf = (ms) => Math.round(u.valToPos(ms / 1000, "x", true));
          // alert periods: a light band from "started" to "stopped" (or to now)
          ctx.save();
          ctx.fillStyle = "rgba(211, 58, 44, 0.08)";
          let opened = null;
          for (const event of state.events) {
            if (event.kind === "alert_started" && opened === null) opened = event.time;
            if (event.kind === "alert_stopped" && opened !== null) {
              const [a, b] = [clamp(xOf(opened)), clamp(xOf(event.time))];
              ctx.fillRect(a, top, b - a, height);
              opened = null;
            }
          }
          if (opened !== null) {
            const a = clamp(xOf(opened));
            ctx.fillRect(a, top, clamp(xOf(state.now)) - a, height);
          }
          ctx.restore();
          let drawn = 0;
          for (const event of state.events) {
            const x = xOf(event.time);
            if (x < left || x > left + width) continue;
            const [stroke, dash] = MARKERS[event.kind] || ["#999", []];
            ctx.save();
            ctx.strokeStyle = stroke;
            ctx.lineWidth = 1.5 * devicePixelRatio;
            ctx.setLineDash(dash.map((d) => d * devicePixelRatio));
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            if (event.kind === "model") {
              ctx.fillStyle = stroke;
              ctx.font = `${11 * devicePixelRatio}px sans-serif`;
              const label = event.label || event.text;  // short on the chart: `v3`
              ctx.fillText(label, x + 3 * devicePixelRatio, top + 12 * devicePixelRatio);
            }
            ctx.restore();
            drawn += 1;
          }
          chart.markers = drawn;
          dashboard.markers = Math.max(...Object.values(charts).map((c) => c.markers || 0));
        }],
      },
    };
  }

  function plotSize(chart) {
    return { width: Math.max(chart.el.querySelector(".plot").clientWidth, 300), height: 230 };
  }

  function options(chart, keys) {
    const axis = { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#e3e6eb" } };
    return {
      ...plotSize(chart),
      scales: {
        x: {
          time: true,
          range: () => [(state.now - state.windowS * 1000) / 1000, state.now / 1000],
        },
      },
      axes: [axis, { ...axis, size: 56, values: (u, values) => values.map(tick) }],
      series: [{}, ...keys.map((key) => ({
        label: key, stroke: colour(key), width: 1.6, spanGaps: true, value: (u, v) => fmt(v),
      }))],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      plugins: chart.markersOn ? [markersPlugin(chart)] : [],
    };
  }

  // Draw `seriesByName` ({name: [[t, v], ...]}) into figure #chart-<id>.
  function draw(id, seriesByName, markersOn = false) {
    const chart = (charts[id] ||= { el: $(`#chart-${id}`), u: null, signature: null, markersOn });
    if (chart.el.hidden) return;
    const keys = Object.keys(seriesByName).filter((k) => seriesByName[k].length).sort();
    const data = align(keys.map((key) => seriesByName[key]));
    const signature = keys.join("\u0000");
    if (!chart.u || chart.signature !== signature) {
      if (chart.u) chart.u.destroy();
      chart.u = new uPlot(options(chart, keys), data, chart.el.querySelector(".plot"));
      chart.signature = signature;
    } else {
      chart.u.setData(data);
    }
    const points = data[0].length;
    chart.el.dataset.points = String(points);
    chart.el.classList.toggle("has-data", points > 0);
    dashboard.points[id] = points;
    chart.el.querySelector(".latest").textContent = keys
      .map((key) => `${key} ${fmt(seriesByName[key].at(-1)[1])}`)
      .join(" · ");
  }

  function drawAll() {
    for (const view of VIEWS) draw(view, state.metrics[view], true);
    if (!$("#chart-leaderboard").hidden) draw("leaderboard", state.models, true);
    draw("throughput", { "records/s": state.throughput });
    draw("latency", { p50: state.p50, p95: state.p95 });
    const empty = $("#chart-throughput .empty");
    empty.textContent = state.throughputSource === null
      ? "no data: no evaluator batches in Elasticsearch and no live evaluator heartbeat"
      : "no data yet";
    $("#chart-latency .empty").textContent = state.p50.length || state.p95.length
      ? "" : "no data: latency comes from the evaluator's batches in Elasticsearch";
  }

  window.addEventListener("resize", () => {
    for (const chart of Object.values(charts)) if (chart.u) chart.u.setSize(plotSize(chart));
  });

  // ---- panels ---------------------------------------------------------------------------

  function renderModel(model) {
    dashboard.model = model ? model.version : null;
    $("#model-version").textContent = model && model.version !== null ? `v${model.version}` : "none yet";
    const detail = $("#model-detail");
    detail.replaceChildren();
    if (!model) return;
    const parts = [model.champion ? `champion ${model.champion}` : model.algorithm, model.mode,
      model.round !== null && model.round !== undefined ? `federated round ${model.round}` : null,
      model.records_learned !== null ? `${fmt(model.records_learned)} records learned` : null,
      model.created_at ? `published ${ago(Date.now() / 1000 - model.created_at)}` : null];
    detail.append(element("div", parts.filter(Boolean).join(" · ")));
    // how far it learnt: the next offset per input partition, and what it had not learnt yet
    const positions = Object.entries(model.positions || {});
    const learnt = positions.slice(0, 6).map(([partition, offset]) => `${partition} @ ${fmt(offset)}`);
    if (positions.length > 6) learnt.push(`+${positions.length - 6} more`);
    const staleness = [learnt.length ? `learnt to ${learnt.join(", ")}` : null,
      model.lag_records != null ? `${fmt(model.lag_records)} records behind when published` : null];
    if (staleness.some(Boolean)) detail.append(element("div", staleness.filter(Boolean).join(" · ")));
    const serving = Object.entries(model.serving || {}).map(([service, v]) => `${service} v${v}`);
    if (serving.length) detail.append(element("div", `in use: ${serving.join(", ")}`));
    const launchers = Object.entries(model.launchers || {}).map(([name, v]) => `${name} v${v}`);
    if (launchers.length) detail.append(element("div", `launchers: ${launchers.join(", ")}`));
    if (model.challengers && model.challengers.length) {
      detail.append(element("div", `challengers: ${model.challengers.join(", ")}`));
    }
    if (model.reason) detail.append(element("div", `reason: ${model.reason}`));
  }

  // Champion and challengers: every metric of each model, window and cumulative views.
  function renderLeaderboard(board) {
    dashboard.leaderboard = board;
    const section = $("#leaderboard");
    const chart = $("#chart-leaderboard");
    section.hidden = chart.hidden = !board;
    if (!board) return;
    const metrics = [...new Set(board.rows.flatMap((row) =>
      Object.values(row.values).flatMap((byMetric) => Object.keys(byMetric))))].sort();
    const views = ["window", "cumulative"];
    const head = [element("th", "model"), element("th", "role")];
    for (const metric of metrics) {
      for (const view of views) head.push(element("th", `${metric} (${view})`));
    }
    section.querySelector("thead tr").replaceChildren(...head);
    const rows = board.rows.map((row) => {
      const tr = element("tr", null, row.role);
      tr.dataset.model = row.model;
      tr.append(element("td", row.model), element("td", row.role, "muted"));
      for (const metric of metrics) {
        for (const view of views) {
          const value = ((row.values[view] || {})[metric]);
          tr.append(element("td", fmt(value), "num"));
        }
      }
      return tr;
    });
    section.querySelector("tbody").replaceChildren(...rows);
    $("#leaderboard-note").textContent = board.champion ? `champion: ${board.champion}` : "";
    chart.querySelector(".metric").textContent = board.metric;
  }

  // Calibration: per bin of probability, the records, their mean probability and how often
  // the outcome happened (window and cumulative views); a gap above 0.1 stands out.
  function renderReliability(panel) {
    dashboard.reliability = panel;
    const section = $("#reliability");
    const views = ["window", "cumulative"].filter((view) => panel && panel.views[view]);
    section.hidden = !views.length;
    if (!views.length) return;
    const head = [element("th", "probability")];
    for (const view of views) {
      head.push(element("th", `records (${view})`), element("th", `mean probability (${view})`),
        element("th", `observed (${view})`), element("th", `gap (${view})`));
    }
    section.querySelector("thead tr").replaceChildren(...head);
    const bins = new Map();
    for (const view of views) {
      for (const row of panel.views[view].bins) {
        if (!bins.has(row.bin)) bins.set(row.bin, { lower: row.lower, upper: row.upper });
        bins.get(row.bin)[view] = row;
      }
    }
    const rows = [...bins.entries()].sort((a, b) => a[0] - b[0]).map(([bin, found]) => {
      const tr = element("tr");
      tr.dataset.bin = bin;
      tr.append(element("td", `${fmt(found.lower)}–${fmt(found.upper)}`, "num"));
      for (const view of views) {
        const row = found[view];
        const gap = row ? Math.abs(row.frequency - row.confidence) : null;
        tr.append(
          element("td", row ? String(row.count) : "–", "num"),
          element("td", row ? fmt(row.confidence) : "–", "num"),
          element("td", row ? fmt(row.frequency) : "–", "num"),
          element("td", fmt(gap), gap !== null && gap > 0.1 ? "num gap far" : "num gap"),
        );
      }
      return tr;
    });
    section.querySelector("tbody").replaceChildren(...rows);
    const newest = panel.views[views[views.length - 1]];
    $("#reliability-note").textContent = `${panel.metric} · evaluation ${newest.evaluation}`;
  }

  // A federated server: each client's training records and loss on its own records, per round.
  function renderRounds(rounds) {
    dashboard.rounds = rounds;
    const section = $("#rounds");
    section.hidden = !rounds.length;
    if (!rounds.length) return;
    const clients = [...new Set(rounds.flatMap((row) => Object.keys(row.clients)))].sort();
    const head = [element("th", "round")];
    for (const client of clients) {
      head.push(element("th", `${client} records`), element("th", `${client} loss`));
    }
    head.push(element("th", "failures"), element("th", "server loss"));
    section.querySelector("thead tr").replaceChildren(...head);
    const body = [...rounds].reverse().map((row) => {
      const tr = element("tr");
      tr.dataset.round = row.round;
      tr.append(element("td", String(row.round), "num"));
      for (const client of clients) {
        const score = row.clients[client] || {};
        tr.append(element("td", fmt(score.examples), "num"), element("td", fmt(score.loss), "num"));
      }
      tr.append(element("td", String(row.failures), "num"), element("td", fmt(row.server_loss), "num"));
      return tr;
    });
    section.querySelector("tbody").replaceChildren(...body);
    $("#rounds-note").textContent = `last completed: ${rounds[rounds.length - 1].round}`;
  }

  function renderServices(services) {
    dashboard.services = services;
    const rows = services.map((service) => {
      const row = element("tr");
      row.dataset.service = service.service;
      const counters = Object.entries(service.counters || {})
        .map(([key, value]) => `${key} ${fmt(value)}`).join(" · ");
      row.append(
        element("td", service.service),
        element("td", service.up ? "up" : service.status, `state ${service.up ? "up" : "down"}`),
        element("td", service.instance || "–", "muted"),
        element("td", ago(service.age_s), "muted"),
        element("td", service.model_version !== null ? `v${service.model_version}` : "–"),
        element("td", counters || "–", "muted"),
      );
      const error = element("td", service.last_error || "", "error");
      if (service.last_error) error.title = service.last_error;
      row.append(error);
      return row;
    });
    $("#services tbody").replaceChildren(...rows);
  }

  function renderEvents() {
    const items = state.events.slice(-50).reverse().map((event) => {
      const item = element("li", null, event.kind);
      item.append(element("time", clock(event.time)), document.createTextNode(event.text));
      return item;
    });
    if (!items.length) items.push(element("li", "none in this window", "muted"));
    $("#events").replaceChildren(...items);
  }

  function renderSources(sources, time) {
    const footer = $("#sources");
    footer.replaceChildren();
    const parts = Object.entries(sources || {}).map(([name, status]) =>
      element("span", status.ok ? `${name} ok` : `${name}: ${status.error}`, status.ok ? "" : "bad"));
    parts.push(element("span", `updated ${clock(time)} (${dashboard.mode})`));
    if (state.throughputSource) parts.push(element("span", `throughput from ${state.throughputSource}`));
    parts.forEach((part, i) => { if (i) footer.append(" · "); footer.append(part); });
  }

  function setConnection(text, kind) {
    const pill = $("#connection");
    pill.textContent = text;
    pill.className = `pill ${kind || ""}`;
  }

  // ---- data flow ------------------------------------------------------------------------

  function apply(snapshot) {
    if (snapshot.usecase !== state.usecase) return;
    if (snapshot.full) {
      resetData();
      dashboard.full += 1;
    }
    state.now = snapshot.time;
    state.windowS = snapshot.window_s;
    state.cursor = snapshot.cursor;
    const from = state.now - state.windowS * 1000;
    for (const [view, byMetric] of Object.entries(snapshot.metrics || {})) {
      const target = (state.metrics[view] ||= {});
      for (const [metric, points] of Object.entries(byMetric)) {
        merge((target[metric] ||= []), points);
      }
    }
    const throughputSource = snapshot.throughput.source;
    if (throughputSource && throughputSource !== state.throughputSource) {
      state.throughput = [];  // never mix Elasticsearch's batches and heartbeat counters
      state.throughputSource = throughputSource;
    }
    const board = snapshot.leaderboard;
    if (board && board.metric !== state.modelsMetric) {
      state.models = {};  // another metric: its series start again
      state.modelsMetric = board.metric;
    }
    for (const [name, points] of Object.entries((board && board.series) || {})) {
      merge((state.models[name] ||= []), points);
    }
    merge(state.throughput, snapshot.throughput.points);
    merge(state.p50, snapshot.latency.p50);
    merge(state.p95, snapshot.latency.p95);
    for (const event of snapshot.events || []) {
      const key = `${event.time}|${event.kind}|${event.text}`;
      if (state.eventKeys.has(key)) continue;
      state.eventKeys.add(key);
      state.events.push(event);
    }
    state.events.sort((a, b) => a.time - b.time);
    for (const byMetric of Object.values(state.metrics)) {
      for (const series of Object.values(byMetric)) trim(series, from);
    }
    for (const series of [state.throughput, state.p50, state.p95]) trim(series, from);
    for (const series of Object.values(state.models)) trim(series, from);
    state.events = state.events.filter((event) => event.time >= from);

    renderLeaderboard(board || null);
    renderRounds(snapshot.rounds || []);
    renderReliability(snapshot.reliability || null);
    drawAll();
    renderModel(snapshot.model);
    renderServices(snapshot.services || []);
    renderEvents();
    dashboard.updates += 1;
    renderSources(snapshot.sources, snapshot.time);
  }

  function disconnect() {
    state.generation += 1;
    if (state.source) state.source.close();
    state.source = null;
    clearTimeout(state.pollTimer);
  }

  function connect() {
    disconnect();
    resetData();
    const generation = state.generation;
    const query = { usecase: state.usecase, window: state.windowS };
    if (params.get("transport") === "poll" || !window.EventSource) {
      poll(generation);
      return;
    }
    setConnection("connecting…");
    const source = new EventSource(api("stream", query));
    state.source = source;
    source.onopen = () => { if (generation === state.generation) dashboard.streams += 1; };
    source.addEventListener("snapshot", (message) => {
      if (generation !== state.generation) return;
      state.sseFailures = 0;
      dashboard.mode = "sse";
      setConnection("live", "live");
      apply(JSON.parse(message.data));
    });
    source.onerror = () => {
      if (generation !== state.generation) return;
      state.sseFailures += 1;
      setConnection("reconnecting…", "error");
      if (source.readyState === EventSource.CLOSED
          || state.sseFailures >= SSE_FAILURES_BEFORE_POLLING) {
        source.close();
        state.source = null;
        poll(generation);
      }
    };
  }

  async function poll(generation) {
    if (generation !== state.generation) return;
    dashboard.mode = "poll";
    const query = { usecase: state.usecase, window: state.windowS };
    if (state.cursor !== null) query.after = state.cursor;
    try {
      const response = await fetch(api("snapshot", query), { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const snapshot = await response.json();
      if (generation !== state.generation) return;
      setConnection("polling", "poll");
      apply(snapshot);
    } catch (error) {
      setConnection(`no answer: ${error.message}`, "error");
    }
    if (generation === state.generation) state.pollTimer = setTimeout(() => poll(generation), POLL_MS);
  }

  function show(usecase) {
    state.usecase = usecase;
    dashboard.usecase = usecase;
    $("#usecase").value = usecase;
    document.title = `${usecase} · STREAMER`;
    params.set("usecase", usecase);
    history.replaceState(null, "", `${location.pathname}?${params}`);
    connect();
  }

  async function loadUsecases() {
    const response = await fetch(api("usecases"), { cache: "no-store" });
    if (!response.ok) throw new Error(`use cases: HTTP ${response.status}`);
    const { usecases } = await response.json();
    const wanted = state.usecase || params.get("usecase");
    if (wanted && !usecases.some((u) => u.name === wanted)) usecases.unshift({ name: wanted });
    const select = $("#usecase");
    select.replaceChildren(...usecases.map((u) => {
      const option = element("option", u.live ? `${u.name} ●` : u.name);
      option.value = u.name;
      return option;
    }));
    if (state.usecase) {
      select.value = state.usecase;
      return;
    }
    const first = wanted
      || (usecases.find((u) => u.live) || usecases.find((u) => u.metrics) || usecases[0] || {}).name;
    if (first) show(first);
    else setConnection("no use case found", "error");
  }

  $("#usecase").addEventListener("change", (event) => show(event.target.value));
  $("#window").addEventListener("change", (event) => {
    state.windowS = Number(event.target.value);
    connect();
  });
  $("#show-batch").addEventListener("change", (event) => {
    $("#chart-batch").hidden = !event.target.checked;
    draw("batch", state.metrics.batch, true);
  });
  window.addEventListener("pagehide", disconnect);

  const requestedWindow = Number(params.get("window"));
  if ([...$("#window").options].some((o) => Number(o.value) === requestedWindow)) {
    $("#window").value = String(requestedWindow);
    state.windowS = requestedWindow;
  }
  loadUsecases().catch((error) => setConnection(error.message, "error"));
  setInterval(() => loadUsecases().catch(() => {}), 30000);
})();
