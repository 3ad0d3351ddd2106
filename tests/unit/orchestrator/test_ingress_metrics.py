"""The ingress's metrics: requests through a real proxy (hypercorn on 127.0.0.1) by application
and status with their latency, DNS queries by response code, as Prometheus reads them from the
registry; and their labels kept bounded whatever clients and replicas send."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from dnslib import DNSRecord
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.dns import ZoneServer
from orchestrator.ingress import Route, RouteTable
from orchestrator.ingress_metrics import (
    LATENCY_BUCKETS,
    DnsMetrics,
    IngressMetrics,
    code_label,
    quantile,
)
from tests.unit.orchestrator.test_dns import NAMES, ask
from tests.unit.orchestrator.test_ingress import proxy, replicas, run

WEB = "web.statemesh.internal"
REQUESTS = "statemesh_ingress_requests_total"


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples `name` exports, as a scrape reads them: by their sorted labels."""
    text = generate_latest(registry).decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


@pytest.mark.parametrize(
    ("status", "label"),
    [(200, "200"), (404, "404"), (503, "503"), (418, "418"), (299, "2xx"), (499, "4xx"),
     (599, "5xx"), (99, "xxx"), (600, "xxx"), (1000, "xxx"), (-1, "xxx")],
)  # fmt: skip
def test_a_status_is_its_code_or_its_class(status: int, label: str) -> None:
    assert code_label(status) == label


@pytest.mark.parametrize(
    ("q", "counts", "expected"),
    [
        (0.5, [0, 4, 0, 0], 0.15),  # all in (0.1, 0.2]: the middle of the bucket
        (0.5, [2, 2, 0, 0], 0.1),  # the upper bound of the first bucket
        (0.95, [10, 0, 0, 10], 0.3),  # in +Inf: the highest finite bound
        (0.25, [4, 0, 0, 0], 0.025),  # from 0 within the first bucket
        (0.5, [0, 0, 0, 0], None),  # nothing observed
    ],
)
def test_quantiles_interpolate_within_a_bucket(
    q: float, counts: list[int], expected: float | None
) -> None:
    found = quantile(q, (0.1, 0.2, 0.3), counts)
    assert found == (None if expected is None else pytest.approx(expected))


def test_a_quantile_refuses_what_it_cannot_mean() -> None:
    with pytest.raises(ValueError, match=r"a quantile lies between 0 and 1, not 1.5"):
        quantile(1.5, (0.1,), [1, 0])
    with pytest.raises(ValueError, match=r"2 bounds need 3 counts, got 2"):
        quantile(0.5, (0.1, 0.2), [1, 0])


def test_counts_are_exported_and_read_back_for_the_owner() -> None:
    metrics = IngressMetrics()
    for status, seconds in [(200, 0.003), (200, 0.03), (200, 0.3), (502, 7.0), (299, 0.03)]:
        metrics.observe("web", status, seconds)
    requests = samples(metrics.registry, "statemesh_ingress_requests_total")
    assert requests == {
        (("app", "web"), ("code", "200")): 3,
        (("app", "web"), ("code", "2xx")): 1,
        (("app", "web"), ("code", "502")): 1,
    }
    buckets = samples(metrics.registry, "statemesh_ingress_request_seconds_bucket")
    assert buckets[(("app", "web"), ("le", "0.005"))] == 1
    assert buckets[(("app", "web"), ("le", "0.05"))] == 3
    assert buckets[(("app", "web"), ("le", "+Inf"))] == 5
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    count = samples(metrics.registry, "statemesh_ingress_request_seconds_count")
    assert count == {(("app", "web"),): 5}
    total = samples(metrics.registry, "statemesh_ingress_request_seconds_sum")
    assert total[(("app", "web"),)] == pytest.approx(7.363)
    traffic = metrics.traffic("web")
    assert (traffic.requests, traffic.errors) == (5, 1)
    assert dict(traffic.by_code) == {"200": 3, "2xx": 1, "502": 1}
    assert traffic.p50_seconds == pytest.approx(0.025 + 0.025 * (2.5 - 1) / 2)
    assert traffic.p95_seconds == pytest.approx(5.0 + 5.0 * (4.75 - 4) / 1)
    assert metrics.traffic("api").requests == 0 and metrics.traffic("api").p50_seconds is None


def test_each_default_registry_is_private_and_a_shared_one_is_shared() -> None:
    one, two = IngressMetrics(), IngressMetrics()
    one.observe("web", 200, 0.1)
    assert samples(two.registry, "statemesh_ingress_requests_total") == {}
    node = CollectorRegistry()
    IngressMetrics(node).observe("web", 200, 0.1)
    DnsMetrics(node).count(None)
    text = generate_latest(node).decode()
    assert 'statemesh_ingress_requests_total{app="web",code="200"} 1.0' in text
    assert 'statemesh_dns_queries_total{rcode="none"} 1.0' in text
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        IngressMetrics(node)  # one proxy per registry: a second would export the same series


def test_requests_through_the_proxy_by_app_and_status() -> None:
    async def scenario() -> None:
        async with replicas(("a", 0.3)) as backends:
            hosts = {
                WEB: [Route("web", "/", tuple(backends))],
                "idle.statemesh.internal": [Route("idle", "/api", ())],
            }
            async with proxy(hosts) as (client, app):
                assert (await client.get("/", headers={"host": WEB})).status_code == 201
                # A host of an application, on a path it does not serve: the app's 404.
                idle = "idle.statemesh.internal"
                assert (await client.get("/x", headers={"host": idle})).status_code == 404
                assert (await client.get("/api", headers={"host": idle})).status_code == 503
                # Hosts no application serves, each a hostile name: all under app="".
                for i in range(20):
                    host = f"evil-{i}.example{'x' * i}"
                    assert (await client.get("/", headers={"host": host})).status_code == 404
                await trio.testing.wait_all_tasks_blocked()  # the last answer is counted
                requests = samples(app.metrics.registry, "statemesh_ingress_requests_total")
                assert requests == {
                    (("app", ""), ("code", "404")): 20,
                    (("app", "idle"), ("code", "404")): 1,
                    (("app", "idle"), ("code", "503")): 1,
                    (("app", "web"), ("code", "201")): 1,
                }
                text = generate_latest(app.metrics.registry).decode()
                assert "evil" not in text
                web = app.metrics.traffic("web")
                # The replica took 0.3 s: its one request lies in the (0.25, 0.5] bucket, or a
                # later one on a loaded machine, never an earlier one.
                assert web.p50_seconds >= 0.375 - 1e-9
                assert (web.requests, web.errors) == (1, 0)
                assert app.metrics.traffic("idle").errors == 1

    run(scenario)


def test_the_counts_of_an_application_gone_from_the_routes_are_dropped() -> None:
    async def scenario() -> None:
        async with replicas(("a", 0.0)) as backends:
            hosts = {
                WEB: [Route("web", "/", tuple(backends))],
                "api.statemesh.internal": [Route("api", "/", tuple(backends))],
            }
            async with proxy(hosts) as (client, app):
                for host in (WEB, "api.statemesh.internal", "gone.example"):
                    await client.get("/", headers={"host": host})
                await trio.testing.wait_all_tasks_blocked()
                assert {k[0][1] for k in samples(app.metrics.registry, REQUESTS)} == {
                    "",
                    "api",
                    "web",
                }
                # "api" is deleted: the next table has web alone.
                table = RouteTable({WEB: hosts[WEB]})
                app.routes = lambda: table
                await client.get("/", headers={"host": WEB})
                await trio.testing.wait_all_tasks_blocked()
                assert samples(app.metrics.registry, REQUESTS) == {
                    (("app", ""), ("code", "404")): 1,
                    (("app", "web"), ("code", "201")): 2,
                }
                assert app.metrics.traffic("api").requests == 0

    run(scenario)


def test_dns_queries_by_response_code() -> None:
    zone = ZoneServer("statemesh.internal", NAMES.get)
    ask(zone, WEB)
    ask(zone, "idle.statemesh.internal")
    ask(zone, "nothing.statemesh.internal")
    ask(zone, "example.com")
    zone.answer(b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\xff" * 5)  # FORMERR
    zone.answer(b"\x01")  # too short to answer
    zone.answer(DNSRecord.question(WEB).reply().pack())  # a response: never answered
    found = samples(zone.metrics.registry, "statemesh_dns_queries_total")
    assert found == {
        (("rcode", "NOERROR"),): 2,
        (("rcode", "NXDOMAIN"),): 1,
        (("rcode", "REFUSED"),): 1,
        (("rcode", "FORMERR"),): 1,
        (("rcode", "NOTIMP"),): 0,
        (("rcode", "SERVFAIL"),): 0,
        (("rcode", "BADVERS"),): 0,
        (("rcode", "none"),): 2,
    }


def test_a_servfail_is_counted() -> None:
    def lookup(name: str) -> list[str]:
        raise RuntimeError("broken")

    async def main() -> None:
        zone = ZoneServer("statemesh.internal", lookup)
        query = DNSRecord.question("bad.statemesh.internal").pack()
        received = [(query, ("127.0.0.1", 5353))]
        sent: list[bytes] = []

        class Socket:
            async def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
                if not received:
                    await trio.sleep_forever()
                return received.pop()

            async def sendto(self, data: bytes, peer: tuple[str, int]) -> None:
                sent.append(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(zone.serve, Socket())  # type: ignore[arg-type]
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert len(sent) == 1
        found = samples(zone.metrics.registry, "statemesh_dns_queries_total")
        assert found[(("rcode", "SERVFAIL"),)] == 1
        assert sum(found.values()) == 1

    trio.run(main)
