"""The live map page: one self-contained HTML document (inline CSS and JS).

The lab's machines are offline: the page fetches nothing but its own server's
``map/events`` (server-sent events, relative to where it was loaded). It
renders the model ``mapserver.view`` builds: hosts with what is alive on them
and their containers, services with their answers, the overlay (a drawing of
the hosts and one line per tunnel, coloured by what the kernels hold), the
timeline, and a banner with the age of what it shows when etcd is unreachable. Every
render is recorded in ``window.mapRenders`` ({revision, at: Date.now()}), so
a test can measure how soon a change in etcd reaches the page.
"""

from __future__ import annotations

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>discovery lab: live map</title>
<style>
  :root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #57606a;
          --line: #d0d7de; --bg: #f6f8fa; --card: #ffffff; --accent: #0969da; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: #1f2328; }
  header { display: flex; gap: 1em; align-items: baseline; flex-wrap: wrap;
           padding: .6em 1em; background: #24292f; color: #fff; }
  header h1 { font-size: 1.15em; margin: 0; }
  header .meta { color: #d0d7de; font-size: .9em; }
  .pill { padding: .1em .6em; border-radius: 1em; font-weight: 600; font-size: .85em; }
  .pill.reachable { background: var(--ok); } .pill.unreachable { background: var(--bad); }
  .pill.loading { background: var(--warn); }
  #banner { display: none; padding: .6em 1em; background: #ffebe9; color: var(--bad);
            border-bottom: 2px solid var(--bad); font-weight: 600; }
  #banner.shown { display: block; }
  main { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr);
         gap: 1em; padding: 1em; }
  @media (max-width: 900px) { main { grid-template-columns: 1fr; } }
  h2 { font-size: 1em; margin: 0 0 .5em; text-transform: uppercase; letter-spacing: .04em;
       color: var(--muted); }
  section { margin-bottom: 1em; }
  .hosts { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: .8em; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
          padding: .6em .8em; }
  .card h3 { margin: 0 0 .3em; font-size: 1.05em; }
  .kv { display: grid; grid-template-columns: max-content 1fr; gap: 0 .8em; font-size: .9em; }
  .kv dt { color: var(--muted); } .kv dd { margin: 0; font-family: ui-monospace, monospace; }
  table { width: 100%; border-collapse: collapse; font-size: .9em; background: var(--card); }
  th, td { text-align: left; padding: .2em .4em; border-bottom: 1px solid var(--line);
           vertical-align: top; }
  th { color: var(--muted); font-weight: 600; }
  td.mono, span.mono { font-family: ui-monospace, monospace; }
  .dot { display: inline-block; width: .7em; height: .7em; border-radius: 50%; margin-right: .3em; }
  .dot.serving { background: var(--ok); } .dot.failing { background: var(--bad); }
  .dot.other { background: var(--warn); }
  .tag { display: inline-block; padding: 0 .4em; margin: 0 .2em .1em 0; border-radius: 3px;
         background: #ddf4ff; color: var(--accent); font-size: .85em; }
  .badge { display: inline-block; padding: 0 .4em; border-radius: 3px; font-size: .8em;
           background: #fff8c5; color: var(--warn); margin-left: .4em; }
  .empty { color: var(--muted); font-style: italic; }
  .kind { display: inline-block; min-width: 7.5em; font-weight: 600; }
  .k-registered, .k-host-joined, .k-lease-taken { color: var(--ok); }
  .k-deregistered, .k-host-left, .k-lease-expired { color: var(--bad); }
  .k-health { color: var(--warn); }
  #timeline { max-height: 22em; overflow-y: auto; }
  .legend { font-size: .85em; color: var(--muted); }
  .legend > span { margin-right: 1em; white-space: nowrap; }
  .card table td { white-space: nowrap; }
  .card { overflow-x: auto; }
  .event { padding: .1em 0; border-bottom: 1px solid var(--line); }
  .note { font-size: .85em; color: var(--muted); }
  .k-tunnel-up { color: var(--ok); } .k-tunnel-down { color: var(--bad); }
  .k-check { color: var(--warn); }
  .alive { display: grid; grid-template-columns: repeat(5, auto); gap: .2em .6em;
           margin: .3em 0 .4em; font-size: .85em; }
  .alive span { white-space: nowrap; }
  .ok { color: var(--ok); } .bad { color: var(--bad); } .unknown { color: var(--muted); }
  #overlay svg { width: 100%; height: auto; background: var(--card);
                 border: 1px solid var(--line); border-radius: 6px; }
  .t-complete { stroke: var(--ok); } .t-partial { stroke: var(--bad); stroke-dasharray: 8 5; }
  .t-unobserved { stroke: #8c959f; stroke-dasharray: 2 5; }
  .tunnel { padding: .15em 0; border-bottom: 1px solid var(--line); font-size: .9em; }
  .line { display: inline-block; width: 2.2em; height: 0; border-top: 3px solid;
          vertical-align: middle; margin-right: .4em; }
  .line.complete { border-color: var(--ok); } .line.partial { border-color: var(--bad);
  border-top-style: dashed; } .line.unobserved { border-color: #8c959f; border-top-style: dotted; }
</style>
</head>
<body>
<header>
  <h1>discovery lab: live map</h1>
  <span id="etcd" class="pill loading">etcd: connecting</span>
  <span class="meta">revision <span id="revision">-</span></span>
  <span class="meta">updated <span id="updated">never</span></span>
  <span class="meta" id="stream"></span>
</header>
<div id="banner" role="alert"></div>
<main>
  <div>
    <section>
      <h2>Hosts and their containers</h2>
      <div id="hosts" class="hosts"><p class="empty">waiting for the first update</p></div>
    </section>
    <section class="legend" id="legend">
      <h2>Legend</h2>
      <span><i class="dot serving"></i>passing / healthy: in the answer</span>
      <span><i class="dot failing"></i>unhealthy / critical: left out of the answer</span>
      <span><i class="dot other"></i>other health: left out</span>
      <span><i class="tag">tag</i> a service tag</span>
      <span><i class="badge">no lease</i><i class="badge">no node record</i> half a host</span>
      <span><i class="line complete"></i>tunnel complete: both kernels hold route,
      neighbour and FDB entry for the other</span>
      <span><i class="line partial"></i>partial: a kernel lacks one (named)</span>
      <span><i class="line unobserved"></i>unobserved: a network agent is not reporting</span>
      <p>Host: node record (name, underlay address, subnet) joined with its flannel
      subnet lease (VTEP MAC, VNI, seconds left on its etcd lease). Alive: the
      network agent by its tunnel report (rewritten every 10 s), the services agent
      by its node record (its lease's seconds left), Docker and DNS by the services
      agent's checks. Answer: the addresses a container resolving
      <span class="mono">NAME.service.lab</span> gets now. Timeline: newest first.</p>
    </section>
  </div>
  <div>
    <section>
      <h2>Services and their answers</h2>
      <table><thead><tr><th>service</th><th>answer (serving addresses)</th><th>endpoints</th>
      </tr></thead>
      <tbody id="services"></tbody></table>
    </section>
    <section id="overlay">
      <h2>Overlay tunnels, as the kernels hold them</h2>
      <div id="diagram"></div>
      <div id="tunnels"></div>
      <p class="note">Each network agent reads back the entries on its VXLAN device and
      publishes them under its lease; a line is green only when both ends hold
      them for each other.</p>
    </section>
    <section>
      <h2>Timeline</h2>
      <div id="timeline"></div>
    </section>
  </div>
</main>
<script>
"use strict";
window.mapRenders = [];
let current = null, receivedAt = 0, streamDown = false;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v; else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function healthClass(row) {
  if (row.serving) return "serving";
  return ["unhealthy", "critical"].includes(row.health) ? "failing" : "other";
}
function age(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return seconds + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
}
function clock(epoch) { return new Date(epoch * 1000).toLocaleTimeString(); }

function renderHost(host) {
  const lease = host.lease;
  const badges = [];
  if (!lease) badges.push(h("span", {class: "badge"}, "no lease"));
  if (!host.record) badges.push(h("span", {class: "badge"}, "no node record"));
  const kv = h("dl", {class: "kv"},
    h("dt", {}, "underlay"), h("dd", {}, host.address || "-"),
    h("dt", {}, "subnet"), h("dd", {}, (lease ? lease.subnet : host.subnet) || "-"),
    h("dt", {}, "VTEP MAC"), h("dd", {}, lease ? lease.vtep_mac : "-"),
    h("dt", {}, "VNI"), h("dd", {}, lease ? lease.vni : "-"),
    h("dt", {}, "lease left"), h("dd", {}, lease && lease.ttl_s !== null && lease.ttl_s >= 0
      ? lease.ttl_s + " s" : "-"));
  let body;
  if (host.containers.length === 0) {
    body = h("p", {class: "empty"}, "no containers registered");
  } else {
    body = h("table", {},
      h("thead", {}, h("tr", {}, ["container", "service", "address", "port", "tags", "health"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, host.containers.map((c) => h("tr", {"data-endpoint": c.id},
        h("td", {}, c.container || "-"),
        h("td", {}, c.service),
        h("td", {class: "mono"}, c.address),
        h("td", {class: "mono"}, c.port ? c.port + "/" + c.protocol : "-"),
        h("td", {}, c.tags.map((t) => h("span", {class: "tag"}, t))),
        h("td", {}, h("i", {class: "dot " + healthClass(c)}), c.health)))));
  }
  return h("div", {class: "card", "data-host": host.name},
    h("h3", {}, host.name, badges), alive(host), kv, body);
}

function mark(ok, text, title) {
  const cls = ok === null ? "unknown" : ok ? "ok" : "bad";
  return h("span", {class: cls, title: title}, (ok === null ? "? " : ok ? "\u2714 " : "\u2716 ")
    + text);
}
function alive(host) {
  const agent = host.network_agent;
  const network = agent.state === "reporting" ? true : agent.state === "silent" ? false : null;
  const checks = host.checks || {};
  const check = (name) => name in checks ? checks[name] === "passing" : null;
  const nodeLeft = host.node_ttl_s !== null && host.node_ttl_s >= 0
    ? " (" + host.node_ttl_s + " s)" : "";
  return h("div", {class: "alive", "data-alive": host.name},
    mark(network, "network agent", agent.state + (agent.age_s !== null
      ? ", report " + Math.round(agent.age_s) + " s old" : "")),
    mark(host.record ? true : null, "services agent" + nodeLeft, host.record
      ? "node record present" : "no node record"),
    mark(check("docker"), "Docker", checks.docker || "not reported"),
    mark(check("dns"), "DNS", checks.dns || "not reported"));
}

function renderDiagram(model) {
  const leased = model.hosts.filter((x) => x.lease);
  // The HTML parser puts <svg> in the SVG namespace: its children are made in the same.
  const holder = document.createElement("div");
  holder.innerHTML = "<svg></svg>";
  const svg = holder.firstChild, svgNS = svg.namespaceURI;
  const size = 360, r = 130, c = size / 2;
  svg.setAttribute("viewBox", "0 0 " + size + " " + (size - 40));
  const at = {};
  leased.forEach((x, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(leased.length, 1);
    at[x.name] = [c + r * Math.cos(a), c - 20 + r * 0.8 * Math.sin(a)];
  });
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  for (const t of model.tunnels) {
    const [x1, y1] = at[t.a], [x2, y2] = at[t.b];
    el("line", {x1, y1, x2, y2, class: "t-" + t.state, "stroke-width": 4,
                "data-tunnel": t.a + "-" + t.b});
  }
  for (const x of leased) {
    const [x0, y0] = at[x.name];
    el("circle", {cx: x0, cy: y0, r: 34, fill: "#24292f"});
    el("text", {x: x0, y: y0 - 2, "text-anchor": "middle", fill: "#fff",
                "font-size": 12, "font-weight": 600}, x.name);
    el("text", {x: x0, y: y0 + 12, "text-anchor": "middle", fill: "#d0d7de",
                "font-size": 8.5}, x.lease.subnet);
  }
  return svg;
}

function render(model) {
  current = model; receivedAt = performance.now();
  document.getElementById("revision").textContent = model.revision;
  document.getElementById("updated").textContent = clock(model.sent_at);
  const hosts = document.getElementById("hosts");
  hosts.replaceChildren(...(model.hosts.length ? model.hosts.map(renderHost)
    : [h("p", {class: "empty"}, "no hosts: no node records and no subnet leases in etcd")]));
  const services = document.getElementById("services");
  services.replaceChildren(...(model.services.length ? model.services.map((s) =>
    h("tr", {"data-service": s.name},
      h("td", {}, s.name),
      h("td", {class: "mono"}, s.answer.length ? s.answer.join(", ")
        : h("span", {class: "empty"}, "no answer (NXDOMAIN): nothing serving")),
      h("td", {}, s.endpoints)))
    : [h("tr", {}, h("td", {colspan: "3", class: "empty"}, "no services registered"))]));
  document.getElementById("diagram").replaceChildren(renderDiagram(model));
  const tunnels = document.getElementById("tunnels");
  tunnels.replaceChildren(...(model.tunnels.length ? model.tunnels.map((t) =>
    h("div", {class: "tunnel", "data-tunnel": t.a + "-" + t.b, "data-state": t.state},
      h("i", {class: "line " + t.state}), h("b", {}, t.a + " \u2194 " + t.b), " " + t.state,
      t.silent.length ? h("div", {class: "note"}, "no report from " + t.silent.join(", ")) : null,
      Object.entries(t.problems).map(([who, found]) =>
        h("div", {class: "note"}, who + ": " + found.join("; ")))))
    : [h("span", {class: "empty"}, "fewer than two leased hosts")]));
  const timeline = document.getElementById("timeline");
  const events = model.timeline.slice().reverse();
  timeline.replaceChildren(...(events.length ? events.map((e) =>
    h("div", {class: "event"},
      h("span", {class: "mono"}, clock(e.at)), " ",
      h("span", {class: "kind k-" + e.kind}, e.kind), " ",
      h("b", {}, e.subject), " ", e.detail))
    : [h("p", {class: "empty"}, "no changes since the map started")]));
  status();
  window.mapRenders.push({revision: model.revision, at: Date.now()});
  if (window.mapRenders.length > 2000) window.mapRenders.shift();
}

function status() {
  if (!current) return;
  const pill = document.getElementById("etcd");
  const banner = document.getElementById("banner");
  pill.className = "pill " + current.etcd;
  if (streamDown) {
    banner.textContent = "the map server is unreachable: showing what it last sent, at "
      + clock(current.sent_at);
    banner.className = "shown";
  } else if (current.etcd === "unreachable") {
    const since = (current.since || 0) + (performance.now() - receivedAt) / 1000;
    pill.textContent = "etcd: unreachable";
    banner.textContent = "etcd is unreachable: showing the last known state, " + age(since)
      + " old (since " + new Date(Date.now() - since * 1000).toLocaleTimeString() + ")";
    banner.className = "shown";
  } else {
    pill.textContent = "etcd: " + current.etcd;
    banner.className = "";
  }
}

function connect() {
  const stream = new EventSource("map/events");
  const note = document.getElementById("stream");
  stream.onopen = () => { note.textContent = "live"; streamDown = false; };
  stream.onmessage = (message) => { render(JSON.parse(message.data).model); };
  stream.onerror = () => {
    note.textContent = "map server unreachable: reconnecting";
    streamDown = true;
    status();
  };
}
setInterval(status, 1000);
connect();
</script>
</body>
</html>
"""

__all__ = ["PAGE"]
