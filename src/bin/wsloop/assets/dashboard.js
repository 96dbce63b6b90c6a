// The live dashboard: one WebSocket to the server's feed (PATH/ws), one JSON sample per interval.
(function () {
  const $ = (id) => document.getElementById(id);
  const KEEP_SECONDS = 180;
  const CLOSE_NAMES = {
    "1000": "1000 normal", "1001": "1001 going away", "1002": "1002 protocol error",
    "1003": "1003 unsupported data", "1006": "1006 no close frame", "1007": "1007 invalid payload",
    "1008": "1008 policy", "1009": "1009 too big", "1011": "1011 internal error", "other": "other codes",
  };
  const BAD_CLOSES = new Set(["1002", "1006", "1007", "1009", "1011"]);
  const state = { hello: null, samples: [], count: 0, retry: 1000, timer: null };
  const color = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const axis = { xFormat: (x) => (x === 0 ? "now" : x + "s"), xMin: -30, xMax: 0 };
  const charts = {
    conns: new LineChart($("chart-conns"), Object.assign({ yFormat: Fmt.si }, axis)),
    msgs: new LineChart($("chart-msgs"), Object.assign({ yFormat: Fmt.si }, axis)),
    bytes: new LineChart($("chart-bytes"), Object.assign({ yFormat: Fmt.bytes }, axis)),
    back: new LineChart($("chart-back"), Object.assign({ yFormat: Fmt.si }, axis)),
  };

  // The time axis spans the history held, from 30 s (a page just opened) up to KEEP_SECONDS.
  function setWindow() {
    const s = state.samples;
    const span = s.length ? s[s.length - 1].uptime_s - s[0].uptime_s : 0;
    const seconds = Math.min(KEEP_SECONDS, Math.max(30, Math.ceil(span / 10) * 10));
    for (const chart of Object.values(charts)) chart.o.xMin = -seconds;
  }

  function feedUrl() {
    const meta = document.querySelector('meta[name="wsloop-feed"]');
    const path = meta ? meta.content : location.pathname.replace(/\/+$/, "") + "/ws";
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function setStatus(kind, text) {
    const el = $("status");
    el.className = "pill " + kind;
    el.textContent = text;
  }

  function setTile(id, value, format, alert) {
    const el = $(id);
    el.dataset.value = String(value);
    el.textContent = format(value);
    if (alert !== undefined) el.parentElement.classList.toggle("alert", alert);
  }

  function connect() {
    state.timer = null;
    setStatus("", "connecting");
    let ws;
    try {
      ws = new WebSocket(feedUrl());
    } catch (e) {
      setStatus("down", "cannot connect");
      return;
    }
    ws.onopen = () => {
      state.retry = 1000;
      setStatus("live", "live");
    };
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => {
      // In broadcast mode the feed also gets every broadcast: anything but a JSON text is ignored.
      if (typeof event.data !== "string") return;
      let m;
      try {
        m = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (m.type === "hello") onHello(m);
      else if (m.type === "sample") onSample(m);
    };
    ws.onclose = () => {
      setStatus("down", "disconnected · retrying");
      if (!state.timer) state.timer = setTimeout(connect, state.retry);
      state.retry = Math.min(state.retry * 2, 15000);
    };
    window.addEventListener("pagehide", () => ws.close(1001, "page closed"), { once: true });
  }

  function onHello(m) {
    state.hello = m;
    state.samples = [];
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    $("server").textContent = m.server + " · " + scheme + m.addr + " · " + m.mode + " mode · " + m.reactors +
      " reactor" + (m.reactors === 1 ? "" : "s") + " · every " + Fmt.seconds(m.interval_ms / 1000) +
      (m.metrics_enabled ? "" : " · built without metrics: every counter reads 0");
  }

  function onSample(m) {
    state.samples.push(m);
    state.count += 1;
    const newest = m.uptime_s;
    while (state.samples.length && state.samples[0].uptime_s < newest - KEEP_SECONDS) state.samples.shift();
    setWindow();
    render(m);
  }

  function series(name, cssColor, pick, fill, dash) {
    const newest = state.samples[state.samples.length - 1].uptime_s;
    // The first sample of a connection has no interval: its rates are not rates yet.
    const points = state.samples
      .filter((s) => s.interval_s > 0 || !pick.rate)
      .map((s) => [Math.round((s.uptime_s - newest) * 10) / 10, pick(s)]);
    return { name, color: color(cssColor), points, fill, dash };
  }

  function rate(name) {
    const f = (s) => s.rates[name];
    f.rate = true;
    return f;
  }

  function render(m) {
    const t = m.totals, r = m.rates;
    $("uptime").textContent = Fmt.seconds(m.uptime_s);
    $("sample-count").textContent = String(state.count);
    $("sample-count").dataset.value = String(state.count);
    setTile("v-conns", t.active_connections, Fmt.si);
    setTile("v-msgs-in", r.messages_received_per_second, Fmt.si);
    setTile("v-msgs-out", r.messages_sent_per_second, Fmt.si);
    setTile("v-bytes-in", r.bytes_received_per_second, (v) => Fmt.bytes(v) + "/s");
    setTile("v-bytes-out", r.bytes_written_per_second, (v) => Fmt.bytes(v) + "/s");
    setTile("v-accepted", t.connections_accepted, Fmt.si);
    setTile("v-hs-fail", t.handshake_failures, Fmt.si, t.handshake_failures > 0);
    setTile("v-proto", t.protocol_errors, Fmt.si, t.protocol_errors > 0);
    setTile("v-slow", t.slow_peers_closed, Fmt.si, t.slow_peers_closed > 0);
    setTile("v-dropped", t.messages_dropped, Fmt.si, t.messages_dropped > 0);

    charts.conns.set([series("open", "--in", (s) => s.totals.active_connections, true)]);
    charts.msgs.set([
      series("in", "--in", rate("messages_received_per_second")),
      series("out", "--out", rate("messages_sent_per_second"), false, true),
    ]);
    charts.bytes.set([
      series("in", "--in", rate("bytes_received_per_second")),
      series("out", "--out", rate("bytes_written_per_second"), false, true),
    ]);
    charts.back.set([
      series("pool buffers", "--third", (s) => s.totals.pool_buffers_outstanding),
      series("dropped/s", "--out", rate("messages_dropped_per_second")),
      series("slow peers/s", "--warn", rate("slow_peers_closed_per_second")),
    ]);

    const codes = (state.hello && state.hello.close_codes) || Object.keys(m.closes_by_code);
    const closes = codes.map((code) => [CLOSE_NAMES[code] || code, m.closes_by_code[code] || 0,
      BAD_CLOSES.has(code)]);
    renderBars($("closes"), closes);
    const reasons = (state.hello && state.hello.handshake_failure_reasons) || Object.keys(m.handshake_failures_by_reason);
    const failures = reasons.map((k) => [k.replace(/_/g, " "), m.handshake_failures_by_reason[k] || 0, true]);
    renderBars($("failures"), failures);

    const body = $("reactors").tBodies[0];
    body.textContent = "";
    for (const x of m.reactors) {
      const row = body.insertRow();
      const cells = [
        "#" + x.index, Fmt.si(x.active_connections), Fmt.si(x.rates.messages_received_per_second),
        Fmt.si(x.rates.messages_sent_per_second), Fmt.bytes(x.rates.bytes_received_per_second),
        Fmt.bytes(x.rates.bytes_written_per_second), Fmt.si(x.connections_accepted), Fmt.si(x.connections_closed),
        Fmt.si(x.handshake_failures), Fmt.si(x.protocol_errors), Fmt.si(x.messages_dropped),
        Fmt.si(x.slow_peers_closed), Fmt.si(x.pool_buffers_outstanding), Fmt.si(x.http_requests),
      ];
      for (const text of cells) row.insertCell().textContent = text;
      row.dataset.active = String(x.active_connections);
    }
    const buffers = t.pool_buffers_outstanding;
    const bytes = state.hello ? buffers * state.hello.pool_buffer_bytes : 0;
    $("note").textContent = "Updates are pushed by the server over a WebSocket; nothing is computed while nobody " +
      "watches. Pool buffers in use now: " + buffers + " (" + Fmt.bytes(bytes) + ")" +
      (m.skipped ? " · " + m.skipped + " updates skipped while this page was behind" : "") + ".";
  }

  connect();
})();
