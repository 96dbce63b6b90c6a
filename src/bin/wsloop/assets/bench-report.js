// The bench report: everything comes from the JSON embedded in #bench-data (written by wsloop bench --html).
(function () {
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("bench-data").textContent);
  const cfg = data.config, res = data.result;
  const color = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  function kv(table, rows) {
    const body = table.tBodies[0];
    for (const [k, v] of rows) {
      if (v === null || v === undefined || v === "") continue;
      const row = body.insertRow();
      row.insertCell().textContent = k;
      row.insertCell().textContent = String(v);
    }
  }

  function tile(label, value, id, bad) {
    const el = document.createElement("div");
    el.className = "tile" + (bad ? " alert" : "");
    const l = document.createElement("div");
    l.className = "label";
    l.textContent = label;
    const v = document.createElement("div");
    v.className = "value";
    v.textContent = value;
    if (id) v.id = id;
    el.append(l, v);
    $("tiles").appendChild(el);
  }

  const lat = res.latency_us, hs = res.connections.handshake_us, err = res.errors;
  const connectErrors = Object.values(err.connect).reduce((a, b) => a + b, 0);
  const errors = connectErrors + err.length_or_type_mismatch + err.unexpected_messages + err.unanswered +
    err.abnormal_closes;

  $("headline").textContent = cfg.url + " · " + cfg.connections + " connections · " + cfg.size + " B " + cfg.kind +
    " · " + cfg.pipeline + " in flight · " + data.generated_utc;
  $("verdict").textContent = data.ok ? "passed" : "failed";
  $("verdict").className = "pill " + (data.ok ? "live" : "down");

  tile("messages/s", Fmt.si(res.measured.messages_per_second), "t-rate");
  tile("MB/s echoed payload", res.measured.megabytes_per_second.toFixed(2));
  tile("latency p50", Fmt.micros(lat.p50), "t-p50");
  tile("latency p99", Fmt.micros(lat.p99), "t-p99");
  tile("latency p99.9", Fmt.micros(lat.p99_9));
  tile("latency max", Fmt.micros(lat.max));
  tile("echoes", Fmt.si(res.messages.received));
  tile("errors", String(errors), "t-errors", errors > 0);

  // Throughput over time, with the warmup shaded.
  const bands = cfg.warmup_seconds > 0 ? [{ from: 0, to: cfg.warmup_seconds, label: "warmup" }] : [];
  const end = data.samples.length ? data.samples[data.samples.length - 1].t : 1;
  const timeAxis = { yFormat: Fmt.si, xFormat: (x) => x + "s", bands, xMin: 0, xMax: end };
  const tp = new LineChart($("chart-throughput"), timeAxis);
  tp.set([
    { name: "echoes/s", color: color("--in"), points: data.samples.map((s) => [s.t, s.received_per_second]),
      fill: true, noValue: true },
    { name: "sent/s", color: color("--out"), points: data.samples.map((s) => [s.t, s.sent_per_second]),
      dash: true, noValue: true },
  ]);
  const conns = new LineChart($("chart-conns"), timeAxis);
  conns.set([{ name: "open", color: color("--third"), points: data.samples.map((s) => [s.t, s.open_connections]),
    fill: true, noValue: true }]);

  // Latency distribution: the HDR percentile curve (the 100% point is the maximum, shown in the table).
  const below = (curve) => curve.filter(([p]) => p < 100);
  const latency = new LineChart($("chart-latency"), { x: "nines", yLog: true, yFormat: Fmt.microsShort,
    empty: "no echo was measured" });
  latency.set([
    { name: "round trip", color: color("--in"), points: below(data.latency_percentiles_us), noValue: true },
    { name: "handshake", color: color("--out"), points: below(data.handshake_percentiles_us), noValue: true },
  ]);

  const ptable = $("percentiles").tBodies[0];
  for (const [name, key] of [["50%", "p50"], ["90%", "p90"], ["99%", "p99"], ["99.9%", "p99_9"], ["max", "max"],
    ["mean", "mean"]]) {
    const row = ptable.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = lat.count ? Fmt.micros(lat[key]) : "–";
    row.insertCell().textContent = hs.count ? Fmt.micros(hs[key]) : "–";
  }
  const count = ptable.insertRow();
  count.insertCell().textContent = "samples";
  count.insertCell().textContent = Fmt.si(lat.count);
  count.insertCell().textContent = Fmt.si(hs.count);

  const run = cfg.duration_seconds !== null ? Fmt.seconds(cfg.duration_seconds) + " after the warmup"
    : cfg.messages + " messages";
  kv($("config"), [
    ["URL", cfg.url],
    ["connections", cfg.connections],
    ["payload", cfg.size + " B " + cfg.kind],
    ["in flight per connection", cfg.pipeline],
    ["reactor threads", cfg.threads],
    ["run", run],
    ["warmup", Fmt.seconds(cfg.warmup_seconds)],
    ["send rate limit", cfg.rate_per_second ? Fmt.si(cfg.rate_per_second) + "/s" : "none (closed loop)"],
    ["connection ramp", cfg.ramp_per_second ? Fmt.si(cfg.ramp_per_second) + "/s" : "all at once"],
    ["connect timeout", Fmt.seconds(cfg.connect_timeout_seconds)],
    ["subprotocols", cfg.protocols.join(", ")],
    ["extra headers", cfg.header_names.join(", ")],
    ["source addresses", cfg.source_ips.join(", ")],
    ["wsloop version", data.wsloop],
  ]);
  const closes = Object.entries(res.closes).map(([code, n]) => code + " × " + n).join(", ");
  const connect = Object.entries(err.connect).map(([kind, n]) => kind + " × " + n).join(", ");
  kv($("result"), [
    ["connections", res.connections.opened + " opened, " + res.connections.failed + " failed"],
    ["handshakes/s", Fmt.si(res.connections.handshakes_per_second)],
    ["messages", res.messages.sent + " sent, " + res.messages.received + " received"],
    ["measured", res.measured.received + " echoes in " + res.measured.seconds.toFixed(2) + " s"],
    ["closes", closes || "none"],
    ["connect errors", connect || "none"],
    ["length/type mismatches", err.length_or_type_mismatch],
    ["unexpected messages", err.unexpected_messages],
    ["unanswered", err.unanswered],
    ["bench CPU", res.bench_cpu.percent_of_one_core.toFixed(0) + "% of one core (user " +
      res.bench_cpu.user_seconds.toFixed(2) + " s, system " + res.bench_cpu.system_seconds.toFixed(2) + " s)"],
  ]);
  $("footer").textContent = "Written by wsloop " + data.wsloop + " bench --html on " + data.generated_utc +
    ". Latencies are round trips from send to echo; the bench reuses one masked frame (see wsloop bench --help).";
})();
