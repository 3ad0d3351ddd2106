"""The metrics of the node's ingress: requests through the HTTP proxy by application and status,
their latency, and DNS queries by response code. They live on the Prometheus registry the node
passes in (a private one by default, so that tests stay independent of each other).

Every label value is bounded, since any client may send anything: an application is named
only once the route table routed the request to it (a request for an unknown host counts under
`app=""`, never under the Host header it sent) and only while the table has it, a status is one
of the codes HTTP defines or its class (`"5xx"` for a 599), and a DNS response code one of the
seven the server answers."""

from __future__ import annotations

import bisect
import http
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds, in seconds, of `statemesh_ingress_request_seconds` (then +Inf)."""
_KNOWN_CODES = frozenset(s.value for s in http.HTTPStatus)


def code_label(status: int) -> str:
    """The `code` label of a response status: three characters, one of the codes HTTP defines
    as they are, any other by its class (`"4xx"`), `"xxx"` outside 100-599 (a replica may send
    anything: its codes must not make series without end)."""
    if status in _KNOWN_CODES:
        return str(status)
    if 100 <= status <= 599:
        return f"{status // 100}xx"
    return "xxx"


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The `q` quantile of a histogram of `counts` per bucket (not cumulative; one more than
    `bounds`, the last for +Inf), interpolated linearly within its bucket as Prometheus'
    `histogram_quantile` does; the highest finite bound when it lies in the +Inf bucket; None
    for an empty histogram."""
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile lies between 0 and 1, not {q}")
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(bounds)} bounds need {len(bounds) + 1} counts, got {len(counts)}")
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if below + count >= rank and count > 0:
            if index == len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bounds[index] - lower) * (rank - below) / count
        below += count
    return bounds[-1]


@dataclass(frozen=True, slots=True)
class AppTraffic:
    """An application's requests through this node's ingress proxy since the node started."""

    requests: int = 0
    errors: int = 0
    """Answered with a 5xx status, by a replica or by the proxy (no replica ready, none
    reachable, a timeout)."""
    by_code: Mapping[str, int] = field(default_factory=dict)
    p50_seconds: float | None = None
    """From the latency histogram: None before the first request."""
    p95_seconds: float | None = None


@dataclass(slots=True)
class _Counts:
    codes: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    seconds: float = 0.0


class IngressMetrics(Collector):
    """`statemesh_ingress_requests_total{app,code}` and `statemesh_ingress_request_seconds{app}`,
    kept as plain counts (which `traffic` reads for the application's owner) and exported by
    this collector at scrape time. A scrape may run on another thread than the proxy: the
    counts change and are copied under a lock."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self._apps: dict[str, _Counts] = {}
        self._lock = threading.Lock()
        self.registry.register(self)

    def observe(self, app: str, status: int, seconds: float) -> None:
        """One request answered: `app` as routed ("" when no application serves its host)."""
        code = code_label(status)
        seconds = max(0.0, seconds)
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            counts = self._apps.get(app)
            if counts is None:
                counts = self._apps[app] = _Counts()
            counts.codes[code] = counts.codes.get(code, 0) + 1
            counts.buckets[bucket] += 1
            counts.seconds += seconds

    def keep_only(self, apps: Collection[str]) -> None:
        """Drop the counts of every application but `apps` (and of unknown hosts): those the
        route table no longer has, deleted, are exported no more."""
        with self._lock:
            for gone in [a for a in self._apps if a and a not in apps]:
                del self._apps[gone]

    def _copy(self, app: str | None = None) -> dict[str, _Counts]:
        """The counts of `app` (of every application if None), as they are now."""
        with self._lock:
            chosen = self._apps.items() if app is None else [(app, self._apps.get(app))]
            return {
                name: _Counts(dict(c.codes), list(c.buckets), c.seconds)
                for name, c in chosen
                if c is not None
            }

    def traffic(self, app: str) -> AppTraffic:
        counts = self._copy(app).get(app)
        if counts is None:
            return AppTraffic()
        return AppTraffic(
            requests=sum(counts.codes.values()),
            errors=sum(n for code, n in counts.codes.items() if code.startswith("5")),
            by_code=dict(sorted(counts.codes.items())),
            p50_seconds=quantile(0.5, LATENCY_BUCKETS, counts.buckets),
            p95_seconds=quantile(0.95, LATENCY_BUCKETS, counts.buckets),
        )

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "statemesh_ingress_requests", _REQUESTS_HELP, labels=["app", "code"]
        )
        yield HistogramMetricFamily(
            "statemesh_ingress_request_seconds", _SECONDS_HELP, labels=["app"]
        )

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "statemesh_ingress_requests", _REQUESTS_HELP, labels=["app", "code"]
        )
        latency = HistogramMetricFamily(
            "statemesh_ingress_request_seconds", _SECONDS_HELP, labels=["app"]
        )
        for app, counts in sorted(self._copy().items()):
            for code, number in sorted(counts.codes.items()):
                requests.add_metric([app, code], number)
            cumulative = 0
            buckets = []
            for bound, number in zip(
                [*map(str, LATENCY_BUCKETS), "+Inf"], counts.buckets, strict=True
            ):
                cumulative += number
                buckets.append((bound, cumulative))
            latency.add_metric([app], buckets, counts.seconds)
        yield requests
        yield latency


_REQUESTS_HELP = "Requests answered by the ingress proxy, by application and status"
_SECONDS_HELP = "Time from a request's arrival at the ingress proxy to the end of its answer"

RCODES: Mapping[int, str] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    16: "BADVERS",
}
"""The response codes the zone's server answers with (RFC 1035 section 4.1.1; BADVERS, an
extended code carried partly in the OPT record, RFC 6891 section 9)."""
NO_REPLY = "none"
"""The `rcode` of a message given no answer: a response, or too short to be a query (and
"other" of an answer with a code the server never sends, kept bounded all the same)."""


class DnsMetrics:
    """`statemesh_dns_queries_total{rcode}`: each message the DNS server received, by the code
    of its answer. Every code is present from the start, at 0."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self._queries = Counter(
            "statemesh_dns_queries",
            "Messages received by the ingress zone's DNS server, by the code of the answer",
            ["rcode"],
            registry=self.registry,
        )
        for name in [*RCODES.values(), NO_REPLY]:
            self._queries.labels(rcode=name)

    def count(self, reply: bytes | None) -> None:
        """Count the message that got `reply` (None: no answer), by the code in its header."""
        # The header's RCODE: the low four bits of its fourth byte.
        self.count_rcode(None if reply is None or len(reply) < 4 else reply[3] & 0x0F)

    def count_rcode(self, rcode: int | None) -> None:
        """Count a message answered with the (extended) response code `rcode` (None: no
        answer)."""
        name = NO_REPLY if rcode is None else RCODES.get(rcode, "other")
        self._queries.labels(rcode=name).inc()
