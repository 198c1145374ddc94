"""A real Prometheus (Debian's `prometheus`) scrapes every process of the dev stack while a journey runs, with
the chart's rules loaded; then every PromQL expression of the dashboards and rules must return data.

What "returns data" means for each kind of expression:
- dashboard panel queries and recording rules: the expression itself has a non-empty result;
- dashboard variables `label_values(SELECTOR, label)` (Grafana syntax, not PromQL): SELECTOR has data;
- alerts, which are normally empty (nothing is wrong): the expression is split at its top-level set
  operators (`and`, `or`, `unless`) and comparisons (`> 0.2`, `== 0`); every operand that is not a number
  must have data. So `A > 0.2 and B >= 3` checks A and B: the thresholds are dropped, never the metrics.
  The full alert expression is evaluated too, and must be valid PromQL (its result may be empty).
Grafana's `$__rate_interval` becomes `1m` and `$namespace` (a regex variable) becomes `.*`.

The rules file also passes `promtool check rules`, both as it is in files/rules and as the chart renders it
into a PrometheusRule (extracted back into a plain rules file).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import nats
import nats.js.errors
import pytest
import yaml

from likeness_dev.journey import GatewayClient, run_journey
from likeness_dev.ports import LOOPBACK, free_port
from likeness_dev.procs import ManagedProcess
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

pytestmark = pytest.mark.slow

CHART = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "likeness"
RULES = CHART / "files" / "rules" / "likeness-rules.yaml"
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
#: The `component` label each process gets, as the chart's ServiceMonitor/PodMonitor set it.
COMPONENTS = {
    "gateway": "gateway",
    "ingest": "ingest",
    "retention": "retention",
    "trainer": "trainer-serve",
    "trainer-worker": "trainer-work",
    "renderer": "renderer-serve",
    "renderer-worker": "renderer-work",
}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "${namespace}": ".*", "$namespace": ".*"}
DATA_TIMEOUT = 90.0
INSTALL_HINT = "install Debian's Prometheus: apt-get install -y prometheus (it brings promtool)"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return found


# --- expressions -------------------------------------------------------------------------------------


def _top_level(expr: str) -> Iterator[int]:
    """Positions of `expr` outside brackets, braces, parentheses and string literals."""
    depth, quote, i = 0, "", 0
    while i < len(expr):
        char = expr[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            yield i
        i += 1


def _closing(expr: str, start: int) -> int:
    """Index of the bracket closing the one at `start` (-1 if none)."""
    depth, quote = 0, ""
    for i in range(start, len(expr)):
        char = expr[i]
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _strip_parens(expr: str) -> str:
    """`(a / b)` -> `a / b`, but `(a) / (b)` stays as it is."""
    expr = expr.strip()
    while expr.startswith("(") and _closing(expr, 0) == len(expr) - 1:
        expr = expr[1:-1].strip()
    return expr


_WORD = re.compile(r"[A-Za-z0-9_:]")
SET_OPERATORS = ("unless", "and", "or")
COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def _split_set_operators(expr: str) -> list[str]:
    positions = set(_top_level(expr))
    cuts: list[tuple[int, int]] = []
    i = 0
    while i < len(expr):
        for word in SET_OPERATORS:
            end = i + len(word)
            if (
                i in positions
                and expr.startswith(word, i)
                and (i == 0 or not _WORD.match(expr[i - 1]))
                and (end >= len(expr) or not _WORD.match(expr[end]))
            ):
                cuts.append((i, end))
                i = end
                break
        else:
            i += 1
    if not cuts:
        return [expr]
    parts, start = [], 0
    for begin, end in cuts:
        parts.append(expr[start:begin])
        start = end
    parts.append(expr[start:])
    return [part.strip() for part in parts]


def _split_comparison(expr: str) -> tuple[str, str] | None:
    positions = set(_top_level(expr))
    for i in sorted(positions):
        for op in COMPARISONS:
            if expr.startswith(op, i) and all(p in positions for p in range(i, i + len(op))):
                if op in (">", "<") and expr[i + 1 : i + 2] == "=":
                    continue
                return expr[:i], expr[i + len(op) :]
    return None


def _is_number(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


def data_operands(expr: str) -> list[str]:
    """The parts of an alert expression that must have data: its operands without thresholds."""
    expr = _strip_parens(expr)
    parts = _split_set_operators(expr)
    if len(parts) > 1:
        return [operand for part in parts for operand in data_operands(part)]
    compared = _split_comparison(expr)
    if compared is None:
        return [expr]
    operands: list[str] = []
    for side in compared:
        if not _is_number(side):
            operands += data_operands(side)
    return operands


def _grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel query and query variable of every dashboard."""
    found: list[tuple[str, str]] = []

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in panels(board["panels"]):
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                match = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"].strip(), re.S)
                assert match, f"{path.name}: variable {variable['name']} is not label_values(...)"
                found.append((f"{path.name}: variable {variable['name']}", match.group(1)))
    return [(where, _grafana_to_promql(expr)) for where, expr in found]


def rule_expressions() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(where, PromQL) of the recording rules, and of the operands of the alerts."""
    recorded: list[tuple[str, str]] = []
    operands: list[tuple[str, str]] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                recorded.append((f"record {rule['record']}", rule["expr"]))
            else:
                for i, operand in enumerate(data_operands(rule["expr"])):
                    operands.append((f"alert {rule['alert']} operand {i}", operand))
    return recorded, operands


def alert_expressions() -> list[tuple[str, str]]:
    return [
        (f"alert {rule['alert']}", rule["expr"])
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


# --- the splitting itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "operands"),
    [
        ('up{component!=""} == 0', ['up{component!=""}']),
        ("likeness:x:max > 900", ["likeness:x:max"]),
        ('(a / b) > 0.2\nand\nsum by (q) (c{s="failed"}) >= 3', ["a / b", 'sum by (q) (c{s="failed"})']),
        ("a > 0 and max by (n) (b) == 0 and c == 0", ["a", "max by (n) (b)", "c"]),
        ("sum(rate(x_monitor_errors_total[10m])) > 5", ["sum(rate(x_monitor_errors_total[10m]))"]),
        ("(a or b * 0) / c", ["(a or b * 0) / c"]),
        ("a > b", ["a", "b"]),
    ],
)
def test_alert_operands_are_found_without_thresholds(expr: str, operands: list[str]) -> None:
    assert data_operands(expr) == operands


def test_every_alert_has_a_runbook_and_a_severity() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
                assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_dashboards_use_the_datasource_variable() -> None:
    assert {path.stem for path in DASHBOARDS} == {"overview", "pipeline", "privacy-retention", "gpu-workers"}
    for path in DASHBOARDS:
        text = path.read_text()
        board = json.loads(text)
        assert any(
            v["name"] == "datasource" and v["type"] == "datasource" for v in board["templating"]["list"]
        )
        uids = set(re.findall(r'"uid":\s*"([^"]*)"', text)) - {board["uid"]}
        assert uids == {"${datasource}"}, f"{path.name} names a data source other than the variable: {uids}"


# --- promtool ------------------------------------------------------------------------------------------


def _promtool_check(path: Path) -> None:
    done = subprocess.run(
        [_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"promtool check rules {path.name}:\n{done.stdout}\n{done.stderr}"
    assert "SUCCESS" in done.stdout


def test_promtool_accepts_the_rules_file() -> None:
    _promtool_check(RULES)


def test_promtool_accepts_the_rendered_prometheus_rule(tmp_path: Path) -> None:
    with helm.Chart.load(CHART) as chart:
        files = chart.render({"metrics": {"prometheusRule": {"enabled": True}}}, name="demo", namespace="lk")
    rendered = yaml.safe_load(files["likeness/templates/prometheusrule.yaml"])
    assert rendered["kind"] == "PrometheusRule"
    plain = tmp_path / "extracted-rules.yaml"
    plain.write_text(yaml.safe_dump({"groups": rendered["spec"]["groups"]}))
    _promtool_check(plain)
    assert rendered["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


# --- alerts that must fire, and must not (promtool's rule unit tests) ------------------------------------


def _alerts_without_annotations(names: set[str]) -> dict[str, Any]:
    """The named alerts of the rules file, annotations dropped (promtool compares them whole; what is
    tested here is when each expression fires)."""
    rules = [
        {key: value for key, value in rule.items() if key != "annotations"}
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") in names
    ]
    assert {rule["alert"] for rule in rules} == names
    return {"groups": [{"name": "under-test", "rules": rules}]}


def _sync_series(replicas: int, sent_per_minute: int, received_per_minute: int) -> list[dict[str, str]]:
    series = []
    for replica in range(replicas):
        labels = f'namespace="prod",pod="gateway-{replica}"'
        series += [
            {
                "series": f'likeness_gateway_ratelimit_sync_messages_total{{outcome="sent",{labels}}}',
                "values": f"0+{sent_per_minute}x40",
            },
            {
                "series": f'likeness_gateway_ratelimit_sync_messages_total{{outcome="received",{labels}}}',
                "values": f"0+{received_per_minute}x40",
            },
            {"series": f"likeness_gateway_ratelimit_sync_peers{{{labels}}}", "values": "0x40"},
        ]
    return series


def _refusal_series(per_hour: int) -> list[dict[str, str]]:
    labels = 'namespace="prod",pod="renderer-serve-0",tenant="acme",quota="concurrent_renders"'
    return [{"series": f"likeness_quota_refusals_total{{{labels}}}", "values": f"0+{per_hour / 60:g}x90"}]


SYNC_BROKEN = [{"exp_labels": {"severity": "warning", "namespace": "prod"}}]
QUOTA_HIT = [
    {
        "exp_labels": {
            "severity": "warning",
            "namespace": "prod",
            "tenant": "acme",
            "quota": "concurrent_renders",
        }
    }
]


@pytest.mark.parametrize(
    ("alert", "series", "expected"),
    [
        # Three replicas each sending 60 reports a minute should each receive 120: none arrive.
        ("LikenessRateLimitSyncBroken", _sync_series(3, 60, 0), SYNC_BROKEN),
        # ... a quarter of them arrive: still broken (under half).
        ("LikenessRateLimitSyncBroken", _sync_series(3, 60, 30), SYNC_BROKEN),
        # Every report reaches both other replicas: healthy.
        ("LikenessRateLimitSyncBroken", _sync_series(3, 60, 120), []),
        # One replica has no one to tell; idle replicas send nothing: neither is broken.
        ("LikenessRateLimitSyncBroken", _sync_series(1, 60, 0), []),
        ("LikenessRateLimitSyncBroken", _sync_series(3, 0, 0), []),
        ("LikenessQuotaRefusals", _refusal_series(120), QUOTA_HIT),
        ("LikenessQuotaRefusals", _refusal_series(30), []),
    ],
    ids=[
        "sync-none-received",
        "sync-quarter-received",
        "sync-healthy",
        "sync-one-replica",
        "sync-idle",
        "quota-120-an-hour",
        "quota-30-an-hour",
    ],
)
def test_an_alert_fires_when_it_should_and_only_then(
    tmp_path: Path, alert: str, series: list[dict[str, str]], expected: list[dict[str, Any]]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(_alerts_without_annotations({alert})))
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": series,
                        "alert_rule_test": [{"eval_time": "35m", "alertname": alert, "exp_alerts": expected}],
                    }
                ],
            }
        )
    )
    done = subprocess.run(
        [_binary("promtool"), "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"promtool test rules:\n{done.stdout}\n{done.stderr}"


# --- a real Prometheus over the dev stack --------------------------------------------------------------


def _scrape_url(stack: DevStack, name: str) -> str:
    """The process's /metrics: its metrics port, or for the gateway its API port where it serves it there."""
    service = stack.services[name]
    candidates = [f"{service.metrics_url}/metrics"]
    if name == "gateway":
        candidates.append(f"{stack.gateway_url}/metrics")
    for url in candidates:
        try:
            response = httpx.get(url, timeout=5.0)
        except httpx.HTTPError:
            continue
        if response.status_code == 200 and "# TYPE" in response.text:
            return url
    pytest.fail(f"{name} serves no Prometheus metrics at {' or '.join(candidates)}")


def _prometheus_config(stack: DevStack) -> dict[str, Any]:
    configs = []
    for name, component in COMPONENTS.items():
        url = httpx.URL(_scrape_url(stack, name))
        configs.append(
            {
                "job_name": component,
                "metrics_path": url.path,
                "static_configs": [
                    {"targets": [f"{url.host}:{url.port}"], "labels": {"component": component}}
                ],
            }
        )
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": configs,
    }


class Prometheus:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def query(self, expr: str) -> dict[str, Any]:
        response = self.http.get("/api/v1/query", params={"query": expr})
        body: dict[str, Any] = response.json()
        return body

    def targets_up(self, count: int) -> bool:
        targets = self.http.get("/api/v1/targets").json()["data"]["activeTargets"]
        return len(targets) == count and all(target["health"] == "up" for target in targets)

    def has_data(self, expr: str) -> bool:
        body = self.query(expr)
        assert body["status"] == "success", f"{expr!r} is not valid PromQL: {body.get('error')}"
        return bool(body["data"]["result"])


@pytest.fixture(scope="module")
def prometheus(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = _binary("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    config = home / "prometheus.yml"
    config.write_text(yaml.safe_dump(_prometheus_config(stack)))
    port = free_port()
    process = ManagedProcess(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--log.level=warn",
        ],
        home / "prometheus.log",
    )
    process.start()
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.running, f"prometheus exited:\n{process.log_tail()}"
            assert time.monotonic() < deadline, f"prometheus not ready:\n{process.log_tail()}"
            time.sleep(0.2)
        prometheus = Prometheus(url)
        # Static targets reach the scrape manager through service discovery, which batches its updates
        # (about every 5 s): wait until every target has been scraped once, or a quick journey ends first.
        while not prometheus.targets_up(len(COMPONENTS)):
            assert time.monotonic() < deadline + 30, f"targets never came up:\n{process.log_tail()}"
            time.sleep(0.5)
        yield prometheus
    finally:
        process.stop()


@pytest.fixture(scope="module")
def after_journey(stack: DevStack, prometheus: Prometheus) -> Prometheus:
    client = GatewayClient(stack.gateway_url, stack.mint_token())
    try:
        run_journey(
            client, sample_photos(2), styles=("linkedin",), images_per_style=1, say=print, timeout=300
        )
    finally:
        client.close()
    return prometheus


def _wait_for_data(prometheus: Prometheus, expressions: list[tuple[str, str]]) -> list[str]:
    """Waits (scrapes every second, rules evaluated every second) until each expression has data; returns
    those that still have none at the deadline."""
    pending = dict(expressions)
    deadline = time.monotonic() + DATA_TIMEOUT
    while True:
        pending = {where: expr for where, expr in pending.items() if not prometheus.has_data(expr)}
        if not pending or time.monotonic() > deadline:
            return [f"{where}: {expr}" for where, expr in pending.items()]
        time.sleep(1.0)


def test_every_target_is_scraped(after_journey: Prometheus) -> None:
    result = after_journey.query('up{component!=""}')["data"]["result"]
    up = {sample["metric"]["component"]: sample["value"][1] for sample in result}
    assert up == dict.fromkeys(COMPONENTS.values(), "1")


def test_every_dashboard_expression_returns_data(after_journey: Prometheus) -> None:
    expressions = dashboard_expressions()
    assert len(expressions) > 50
    missing = _wait_for_data(after_journey, expressions)
    assert missing == [], "dashboard expressions without data:\n" + "\n".join(missing)


def test_every_rule_expression_returns_data(after_journey: Prometheus) -> None:
    recorded, operands = rule_expressions()
    assert len(recorded) >= 7
    assert len(operands) >= 12
    missing = _wait_for_data(after_journey, recorded + operands)
    assert missing == [], "rule expressions without data:\n" + "\n".join(missing)
    for where, expr in alert_expressions():
        body = after_journey.query(expr)
        assert body["status"] == "success", f"{where} is not valid PromQL: {body.get('error')}"


def test_rules_are_loaded_and_healthy(after_journey: Prometheus) -> None:
    groups = after_journey.http.get("/api/v1/rules").json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] == "err"]
    assert unhealthy == []


def test_no_label_carries_an_id(after_journey: Prometheus) -> None:
    """Every label value of every likeness_* series: no subject, job, photo, render or erasure id."""
    names = after_journey.http.get("/api/v1/label/__name__/values").json()["data"]
    ours = [name for name in names if name.startswith("likeness")]
    assert len(ours) > 20
    id_like = re.compile(r"\b(sub|pho|trn|ren|img|era|job)_[0-9a-z]{8,}")
    for name in ours:
        for sample in after_journey.query(name)["data"]["result"]:
            for label, value in sample["metric"].items():
                assert not id_like.search(value), f"{name}{{{label}={value!r}}} looks like an id"


# --- bounded growth (issue 18) ------------------------------------------------------------------------

#: A bucket no journey step writes, reported by retention (`likeness.stream_usage`), filled for real.
FILLED_BUCKET = "receipts"
FILL_PREFIX = "fill-test"
FULL_ALERT_TIMEOUT = 240.0  # the monitor's 15 s, the alert's `for: 1m`, and a busy machine


async def _fill_bucket(nats_url: str) -> tuple[int, str]:
    """Tightens the bucket's byte bound to what it holds plus 64 KiB, as the admin, and writes until the
    server refuses (DiscardNew); returns the bound it had and the refusal's words."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        stream = f"KV_{FILLED_BUCKET}"
        info = await js.stream_info(stream)
        original = int(info.config.max_bytes or 0)
        await js.update_stream(info.config.evolve(max_bytes=int(info.state.bytes) + 64 * 1024))
        kv = await js.key_value(FILLED_BUCKET)
        for n in range(1000):
            try:
                await kv.put(f"{FILL_PREFIX}.{n}", b"x" * 1024)
            except nats.js.errors.APIError as refused:
                return original, str(refused.description)
        raise AssertionError("the bucket never refused a write")
    finally:
        await nc.close()


async def _empty_bucket(nats_url: str, original_max_bytes: int) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        stream = f"KV_{FILLED_BUCKET}"
        await js.purge_stream(stream, subject=f"$KV.{FILLED_BUCKET}.{FILL_PREFIX}.>")
        info = await js.stream_info(stream)
        await js.update_stream(info.config.evolve(max_bytes=original_max_bytes))
    finally:
        await nc.close()


def test_a_full_stream_raises_its_alert(stack: DevStack, prometheus: Prometheus) -> None:
    """A KV bucket filled to its bound refuses the next write and raises LikenessStreamFull (firing, after
    its `for`), with the stream named and nothing else in its labels."""
    nats_url = stack.infra.endpoints.nats_url
    original, refusal = asyncio.run(_fill_bucket(nats_url))
    try:
        assert "maximum bytes" in refusal, refusal
        query = f'ALERTS{{alertname="LikenessStreamFull",alertstate="firing",stream="KV_{FILLED_BUCKET}"}}'
        deadline = time.monotonic() + FULL_ALERT_TIMEOUT
        while not prometheus.has_data(query):
            assert time.monotonic() < deadline, "a full stream raised no LikenessStreamFull alert"
            time.sleep(2.0)
        (alert,) = prometheus.query(query)["data"]["result"]
        assert alert["metric"]["severity"] == "critical"
        assert not prometheus.has_data('ALERTS{alertname="LikenessStreamFull",stream!~"KV_receipts"}')
    finally:
        asyncio.run(_empty_bucket(nats_url, original))
