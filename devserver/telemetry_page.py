"""`python -m devserver --telemetry`: the functions export over OTLP/HTTP to the stand-in itself, which keeps what
arrives (devserver.otlp) and shows it at `/telemetry/`: requests by provider, outcome and source, the hit ratio,
shed requests, upstream latency percentiles, calls in flight, the fleet's state, recent log records. Dev-only, and
loopback-only like every dev endpoint.

- `POST /v1/traces`, `/v1/metrics`, `/v1/logs`: OTLP/HTTP (protobuf), as the SDK's exporters send it.
- `GET /v1/dev/telemetry`: the page's figures as JSON; `DELETE` forgets everything received.
- `GET /telemetry/`: the page (it polls the JSON every second).
"""

import json
import os

from werkzeug.wrappers import Request, Response

from .otlp import MAX_BODY_BYTES, PATHS, Received
from .wsgi import json_error

# What `--telemetry` sets for the functions, unless the environment already says otherwise: export here, often.
EXPORT_SETTINGS = {
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    "OTEL_BSP_SCHEDULE_DELAY": "500",
    "OTEL_BLRP_SCHEDULE_DELAY": "500",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "2",  # a stand-in already stopped delays an exit by this much at most
    "OTEL_SERVICE_NAME": "kaizala-auth-local",
}
RULES = (*PATHS, "/telemetry/", "/v1/dev/telemetry")


def export_here(base: str) -> None:
    """Point the functions' telemetry (this process's, and the instances' it starts) at the stand-in at `base`."""
    os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    for name, value in EXPORT_SETTINGS.items():
        os.environ.setdefault(name, value)


def on_otlp(received: Received | None, request: Request) -> Response:
    if received is None:
        return json_error(404, "not_found", "Telemetry is off: start the local host with --telemetry.")
    if request.method != "POST":
        return json_error(405, "method_not_allowed", "Use POST.", {"Allow": "POST"})
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return json_error(413, "payload_too_large", f"Send at most {MAX_BODY_BYTES} bytes.")
    try:
        answer = received.accept(request.path, request.get_data(cache=False), request.headers.get("Content-Encoding"))
    except (ValueError, OSError, EOFError):
        return json_error(400, "bad_request", "Not an OTLP protobuf export.")
    return Response(answer, mimetype="application/x-protobuf")


def on_summary(received: Received | None, request: Request) -> Response:
    if received is None:
        return json_error(404, "not_found", "Telemetry is off: start the local host with --telemetry.")
    if request.method == "DELETE":
        received.clear()
        return Response(status=204)
    return Response(json.dumps(received.summary()), mimetype="application/json", headers={"Cache-Control": "no-store"})


def on_page(received: Received | None, request: Request) -> Response:
    if received is None:
        return json_error(404, "not_found", "Telemetry is off: start the local host with --telemetry.")
    return Response(PAGE, mimetype="text/html", headers={"Cache-Control": "no-store"})


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kaizala_auth telemetry (local)</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.2rem; } h2 { font-size: 1rem; margin-top: 1.4rem; }
  table { border-collapse: collapse; } td, th { padding: .2rem .8rem .2rem 0; text-align: left; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .big { font-size: 1.6rem; font-weight: 600; } .muted { color: #777; }
  pre { background: #f6f6f6; padding: .5rem; max-height: 18rem; overflow: auto; }
</style>
</head>
<body>
<h1>kaizala_auth telemetry <span class="muted">(exported by the functions over OTLP to this stand-in)</span></h1>
<p><span class="big" id="answered">0</span> requests,
   hit ratio <span class="big" id="hits">-</span>,
   shed <span class="big" id="shed">0</span>,
   fleet <span class="big" id="fleet">off</span>
   <span class="muted" id="when"></span></p>
<h2>Requests (provider / outcome / source)</h2><table id="requests"></table>
<h2>Upstream latency (ms, from the spans)</h2><table id="upstream"></table>
<h2>Upstream calls by outcome; in flight</h2><table id="outcomes"></table>
<h2>Shed (503 without an upstream call), by reason</h2><table id="shedby"></table>
<h2>Fleet: Redis round trips (ms), state changes</h2><table id="fleetrt"></table>
<h2>Entra signing key fetches</h2><table id="keys"></table>
<h2>Recent kaizala_auth log records</h2><pre id="logs"></pre>
<script>
function rows(id, data, format) {
  const table = document.getElementById(id);
  table.replaceChildren();
  for (const [name, value] of Object.entries(data || {})) {
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    for (const cell of format(value)) { const td = tr.insertCell(); td.className = "n"; td.textContent = cell; }
  }
}
const count = (v) => [String(v)];
const pct = (v) => v ? [v.count + " calls", "p50 " + v.p50.toFixed(1), "p95 " + v.p95.toFixed(1),
                        "p99 " + v.p99.toFixed(1)] : ["none yet"];
async function refresh() {
  try {
    const s = await (await fetch("/v1/dev/telemetry", {cache: "no-store"})).json();
    document.getElementById("answered").textContent = s.answered;
    document.getElementById("hits").textContent = s.hit_ratio === null ? "-" : (100 * s.hit_ratio).toFixed(1) + "%";
    document.getElementById("shed").textContent = Object.values(s.shed).reduce((a, b) => a + b, 0);
    document.getElementById("fleet").textContent =
      s.fleet_available === null ? "off" : (s.fleet_available ? "available" : "UNAVAILABLE");
    document.getElementById("when").textContent = " (updated " + new Date().toLocaleTimeString() + ")";
    rows("requests", s.requests, count);
    rows("upstream", s.upstream, pct);
    rows("outcomes", Object.assign({}, s.upstream_outcomes,
      Object.fromEntries(Object.entries(s.upstream_active).map(([k, v]) => [k + " in flight", v]))), count);
    rows("shedby", s.shed, count);
    rows("fleetrt", Object.assign({}, s.fleet_round_trips, s.fleet_state_changes),
      (v) => typeof v === "number" ? [String(v)] : pct(v));
    rows("keys", s.signing_key_fetches, count);
    document.getElementById("logs").textContent = s.logs.join("\\n");
  } catch (error) {
    document.getElementById("when").textContent = " (the stand-in does not answer)";
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
