"""The ingress data plane in HAProxy: the node renders its route table as an HAProxy
configuration, runs `haproxy` (Debian's package) as a child process, reloads it when the routes
change, and reads one log line per request for its metrics. The Python proxy
(`orchestrator.ingress`) stays the fallback where `haproxy` is not installed.

Every rule of the Python proxy holds here, by the configuration:

- Routing: by Host (lower case, without port or trailing dot), then Kubernetes' element-wise
  path prefixes, longest first (an exact map of `host + prefix`, then a prefix map of
  `host + prefix + "/"` written longest first, HAProxy taking the first match). A Host that is
  not a host name (`[a-z0-9._-]`, a port) names no application. A request carried by another
  node's proxy (`RELAY_HEADER`) is served from this node's pods only.
- Paths: instead of resolving dot segments, a path holding one (`.`, `..`, their percent-
  encodings, or either with parameters, `..;`), a backslash, an encoded slash or backslash, or
  a percent-encoded unreserved character (`%61` for `a`) is refused with 400, so no rule can be
  stepped around and a replica never sees a path the rules did not (the routes match the path as
  sent; the replica may decode it); a target that is not a path is refused with 400 too.
  Browsers and HTTP libraries resolve dot segments and do not encode unreserved characters.
- Headers: the client's forwarding headers (any spelling, `_` for `-`), hop-by-hop headers
  (`Connection` included, so no header the client nominates there can be dropped downstream)
  and the relay header are removed; `X-Forwarded-For/-Host/-Proto` and `Forwarded` are set from
  the connection. Upgrades (WebSocket) are refused with 403; HTTP/2 is not spoken.
- Dialling: only backends `may_dial` accepts are written into the configuration, so a backend
  the node does not know is never dialled. A replica on another node is reached through a
  relay listener of this HAProxy (a unix socket) that adds `RELAY_HEADER` and dials that node's
  proxy, so pods never see the header. Round robin over a route's backends; a backend that
  refuses the connection passes the request to the next.
- Answers: plain text that says what happened (404, 503 with Retry-After, 413, 502, 504), as
  the Python proxy's.
- Connections: at most MAX_CLIENT_CONNECTIONS at once, MAX_CONNECTIONS_PER_ADDRESS of them from
  one address, so that one client holding idle connections cannot shut the others out.

Differences, by design of a native proxy: a request body is buffered only up to 64 KiB, the
rest streamed to the replica, so the body timeout bounds the wait for its first part and then
each pause (`timeout client`), and its size is limited only when it declares a Content-Length
(a chunked body is streamed whole, and its trailers with it); headers a client names in
`Connection` reach the replica as ordinary headers (the `Connection` header does not); a request
HAProxy cannot parse, or whose head is late, gets HAProxy's own HTML 400 or 408; when no replica
accepts the connection the answer is HAProxy's 503 (the Python proxy's is 502);
`ProxyLimits.max_connections` bounds the connections to each replica, not to all together; a
relayed request whose peer proxy cannot be reached is answered by the relay listener (503)
instead of passing to the next backend; a route change is applied by a reload (within
`REFRESH_SECONDS`, at most one per `MIN_RELOAD_SECONDS`), after which a kept-alive connection
may get one more answer from the old worker, which finishes its requests for at most
`OLD_WORKER_SECONDS`."""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import logging
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from chain.clock import Clock, SystemClock
from orchestrator.errors import OrchestratorError
from orchestrator.ingress import RELAY_HEADER, Backend, ProxyLimits, RouteTable
from orchestrator.ingress_metrics import IngressMetrics
from orchestrator.registry import die_with_parent, find_program

log = logging.getLogger("statemesh.ingress")

HAPROXY_PACKAGE = "haproxy"
HAPROXY_USER = "haproxy"
"""The user Debian's package makes for HAProxy's workers."""
FOLDER_PREFIX = "statemesh-ingress-"
"""The data plane's files live in a temporary folder so named (its unix socket paths must
fit 107 bytes, which a node's base path may not leave room for)."""
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
REFRESH_SECONDS = 0.2
"""How often the route table is compared with the configuration running."""
RECHECK_SECONDS = 2.0
"""How often the configuration is rendered again although the table did not change: whether a
peer's proxy may be dialled depends on its advertisement, which lapses with time."""
MIN_RELOAD_SECONDS = 2.0
"""The shortest time between two reloads."""
RESTART_SECONDS = 1.0
OLD_WORKER_SECONDS = 30
"""How long a worker of an older configuration may finish its requests after a reload (with
`MIN_RELOAD_SECONDS`, at most 15 of them at once)."""
MAX_CLIENT_CONNECTIONS = 20_000
"""Client connections at once (fewer where the file limit is lower, `_client_connections`)."""
MAX_CONNECTIONS_PER_ADDRESS = 1_000
"""Client connections from one address at once: one client cannot take every slot."""
STICK_ENTRIES = 100_000
STALE_SECONDS = 3600
"""A folder of a data plane without its node's pid is removed after this long."""
LOG_LINE_BYTES = 512
LOG_RING_BYTES = 4 * 1024 * 1024
"""HAProxy's buffer of log lines not yet read by the node (about 200,000 lines): the node
reads them over a stream socket, so none is lost while it keeps up within that."""
LOG_READ_SECONDS = 0.05
"""The log is read at most this often, in bulk: waking for each line costs more than it."""

_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,252}")
"""An application name as it may appear in the configuration's text (its 503 answer), its map
files and its log lines (a DNS label, as the chain requires)."""
_UNSAFE_PATH = (
    r"(^|/)(\.|%2e){1,2}(;[^/]*)?(/|$)"
    r"|%(2[de]|3[0-9]|[46][1-9a-f]|[57][0-9a]|5f|7e)"
)
"""A path HAProxy refuses (with case ignored): a dot segment, also with parameters (`..;`,
which some servers read as `..`), or a percent-encoded unreserved character (`%61` is `a` to
the replica but not to the routes, which match paths as sent)."""
_MAP_TOKEN = re.compile(r"[\x21-\x7e]+")
"""What a map file's key may hold: printable ASCII without spaces."""
_FORWARDING = (
    r"x[-_]forwarded([-_].*)?|forwarded|forwarded[-_]for|x[-_]real[-_]ip|true[-_]client[-_]ip"
    r"|client[-_]ip|x[-_]client[-_]ip|x[-_]cluster[-_]client[-_]ip|cf[-_]connecting[-_]ip"
    r"|cf[-_]pseudo[-_]ipv4|fastly[-_]client[-_]ip|x[-_]appengine[-_]user[-_]ip"
)
"""`ingress.FORWARDING_HEADERS` and every `X-Forwarded-*`, in either spelling."""
_HOP_BY_HOP = (
    r"connection|keep[-_]alive|proxy[-_]authenticate|proxy[-_]authorization"
    r"|proxy[-_]connection|te|trailers?|upgrade"
)
_RELAY = RELAY_HEADER.decode().replace("-", "[-_]")
_TEXT = '"text/plain; charset=utf-8"'


class HaproxyError(OrchestratorError):
    """HAProxy is missing, refused a configuration, or exited."""


def find_haproxy() -> str | None:
    """The `haproxy` binary (Debian puts it in /usr/sbin, which a user's PATH may lack)."""
    return find_program("haproxy")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A configuration and the map files it reads (names relative to its folder)."""

    config: str
    files: dict[str, str]
    apps: frozenset[str]
    maps: str
    """The folder of the map files, as the configuration names it."""


def _ip(address: str) -> str | None:
    """`address` as HAProxy writes an IP (IPv6 in brackets), or None if it is not one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if "%" in address or str(ip) != address.lower():
        return None  # an IPv6 scope (`fe80::1%eth0`) or another spelling: not ours to write
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _reply(status: int, text: str, *, log_format: bool = False, extra: str = "") -> str:
    kind = "lf-string" if log_format else "string"
    head = f"    http-request return status {status} content-type {_TEXT}"
    return f"{head} {kind} {_quoted(text)}{extra}"


def _quoted(text: str) -> str:
    """A double-quoted HAProxy word ending with a newline (the text is ours: no quotes in it)."""
    assert '"' not in text and "\\" not in text, text
    return '"' + text + '\\n"'


def render(
    table: RouteTable,
    *,
    folder: Path,
    maps: Path,
    listener_fd: int,
    limits: ProxyLimits,
    may_dial: Callable[[Backend], bool],
    user: str | None = None,
    clients: int = MAX_CLIENT_CONNECTIONS,
) -> Rendered:
    """The configuration serving `table` on the listening socket `listener_fd`: its relay,
    log and stats sockets live in `folder`, its map files (`Rendered.files`) in `maps`. With
    `user`, HAProxy's workers run as that user and group (their sockets are theirs). `clients`:
    the client connections it holds at once."""
    routes: list[tuple[str, str, str, list[Backend]]] = []  # (backend name, host, path, ...)
    apps_map: list[str] = []
    exact: list[str] = []
    prefixes: list[tuple[int, str]] = []
    peers: dict[Backend, int] = {}
    apps: set[str] = set()
    for host in sorted(table.hosts):
        host_routes = table.hosts[host]
        if not _MAP_TOKEN.fullmatch(host) or not _SAFE_NAME.fullmatch(host_routes[0].app):
            log.warning("ingress host %r of %r cannot be served natively", host, host_routes[0].app)
            continue
        apps_map.append(f"{host} {host_routes[0].app}")
        for route in host_routes:
            if not _MAP_TOKEN.fullmatch(route.path) or not route.path.startswith("/"):
                log.warning("ingress path %r of %s cannot be served natively", route.path, host)
                continue
            name = f"r{len(routes)}"
            dialled = [b for b in route.backends if may_dial(b) and _ip(b.address) is not None]
            for backend in dialled:
                if backend.relay:
                    peers.setdefault(backend, len(peers))
            routes.append((name, host, route.path, dialled))
            apps.add(route.app)
            if route.path == "/":
                prefixes.append((len(host) + 1, f"{host}/ {name}"))
            else:
                exact.append(f"{host}{route.path} {name}")
                key = f"{host}{route.path}/"
                prefixes.append((len(key), f"{key} {name}"))
    prefixes.sort(key=lambda entry: -entry[0])  # the first match is the longest
    files = {
        "apps.map": "".join(line + "\n" for line in apps_map),
        "exact.map": "".join(line + "\n" for line in exact),
        "prefix.map": "".join(line + "\n" for _, line in prefixes),
    }
    out = [
        "global",
        f"    maxconn {clients + 64 * (len(peers) + 1)}",
        "    nbthread 1",
        *([f"    user {user}", f"    group {user}"] if user else []),
        f"    log ring@requests len {LOG_LINE_BYTES} format raw local0",
        f"    stats socket {folder / 'admin.sock'} mode 600 level admin expose-fd listeners",
        f"    hard-stop-after {OLD_WORKER_SECONDS}s",
        f"    tune.bufsize {64 * 1024}",
        "",
        "ring requests",
        "    format raw",
        f"    maxlen {LOG_LINE_BYTES}",
        f"    size {LOG_RING_BYTES}",
        "    timeout connect 5s",
        "    timeout server 60s",
        f"    server node unix@{folder / 'log.sock'}",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        f"    timeout connect {_ms(limits.connect_timeout)}",
        f"    timeout client {_ms(limits.body_timeout)}",
        f"    timeout server {_ms(limits.read_timeout)}",
        f"    timeout http-request {_ms(limits.body_timeout)}",
        "    timeout http-keep-alive 5s",
        f"    timeout queue {_ms(limits.connect_timeout)}",
        "    option redispatch 1",
        f"    http-error status 502 content-type {_TEXT} string {_quoted('a replica failed')}",
        "    http-error status 503 content-type "
        + _TEXT
        + " string "
        + _quoted("no ready replica accepted the connection, or the ingress proxy is busy")
        + " hdr retry-after 1",
        f"    http-error status 504 content-type {_TEXT} string "
        + _quoted("the replica did not answer in time"),
        "",
        "frontend ingress",
        f"    bind fd@{listener_fd} proto h1",
        f"    maxconn {clients}",
        # One address holds at most a share of the connections: idle ones (even before their
        # first request) take a slot until a timeout ends them.
        f"    stick-table type ipv6 size {STICK_ENTRIES} expire 60s store conn_cur",
        "    tcp-request connection track-sc0 src",
        f"    tcp-request connection reject if {{ sc0_conn_cur gt {MAX_CONNECTIONS_PER_ADDRESS} }}",
        "    option http-buffer-request",
        '    log-format "%[var(txn.app)] %ST %Ta"',
        _reply(400, "the request target must be a path starting with /")
        + " unless { url -m beg / }",
        _reply(400, "the path holds a dot segment, a backslash or an encoded slash or letter")
        + rf" if {{ path -m reg -i {_UNSAFE_PATH} }} || {{ path -m sub -i %2f %5c \\ }}",
        _reply(403, "upgrades (WebSocket) are not proxied") + " if { req.hdr(upgrade) -m found }",
        "    http-request set-var(txn.path) path",
        "    http-request set-var(txn.host) req.hdr(host),lower,regsub(:[0-9]+$,),regsub(\\.+$,)"
        " if { req.hdr_cnt(host) eq 1 } { req.hdr(host) -m reg -i ^[a-z0-9_.-]+(:[0-9]+)?$ }",
        f"    http-request set-var(txn.app) var(txn.host),map_str({maps / 'apps.map'})",
        _reply(404, "no application serves this host (%[var(txn.host)])", log_format=True)
        + " unless { var(txn.app) -m found }",
        "    http-request set-var(txn.key) var(txn.host),concat(,txn.path,)",
        f"    http-request set-var(txn.route) var(txn.key),map_str({maps / 'exact.map'})",
        f"    http-request set-var(txn.route) var(txn.key),map_beg({maps / 'prefix.map'})"
        " unless { var(txn.route) -m found }",
        _reply(
            404,
            "no application serves this path %[var(txn.path)] (%[var(txn.host)])",
            log_format=True,
        )
        + " unless { var(txn.route) -m found }",
        _reply(413, f"request body over {limits.max_body_bytes} bytes")
        + f" if {{ req.hdr_val(content-length) gt {limits.max_body_bytes} }}",
        f"    http-request set-var(txn.relayed) bool(true) if {{ req.hdr({RELAY_HEADER.decode()})"
        " -m found }",
        f"    http-request del-header ^({_FORWARDING}|{_HOP_BY_HOP}|{_RELAY})$ -m reg",
        "    http-request set-header x-forwarded-for %[src]",
        "    http-request set-header x-forwarded-host %[req.hdr(host)]",
        "    http-request set-header x-forwarded-proto http",
        "    http-request set-header forwarded "
        '"for=%[src];host=%[req.hdr(host)];proto=http"'
        " if !{ src -m sub : } !{ req.hdr(host) -m sub : }",
        "    http-request set-header forwarded "
        '"for=%[src];host=\\"%[req.hdr(host)]\\";proto=http"'
        " if !{ src -m sub : } { req.hdr(host) -m sub : }",
        "    http-request set-header forwarded "
        '"for=\\"[%[src]]\\";host=%[req.hdr(host)];proto=http"'
        " if { src -m sub : } !{ req.hdr(host) -m sub : }",
        "    http-request set-header forwarded "
        '"for=\\"[%[src]]\\";host=\\"%[req.hdr(host)]\\";proto=http"'
        " if { src -m sub : } { req.hdr(host) -m sub : }",
        "    http-response del-header ^(keep[-_]alive|proxy[-_].*|te|trailers?|upgrade)$ -m reg",
        "    use_backend %[var(txn.route)]l if { var(txn.relayed) -m bool }",
        "    use_backend %[var(txn.route)]",
        "",
    ]
    for name, host, _path, dialled in routes:
        app = table.hosts[host][0].app
        for suffix, chosen in ((("", dialled)), ("l", [b for b in dialled if not b.relay])):
            out += [f"backend {name}{suffix}", "    balance roundrobin"]
            if not chosen:
                text = f"application {app} has no ready replica"
                out.append(_reply(503, text, extra=" hdr retry-after 5"))
            else:
                out.append(f"    retries {max(1, len(chosen) - 1)}")
                for index, backend in enumerate(chosen):
                    if backend.relay:
                        target = f"unix@{folder / f'relay-{peers[backend]}.sock'}"
                    else:
                        target = f"{_ip(backend.address)}:{backend.port}"
                    out.append(f"    server s{index} {target} maxconn {limits.max_connections}")
            out.append("")
    for backend, index in peers.items():
        out += [
            f"frontend relay{index}",
            f"    bind unix@{folder / f'relay-{index}.sock'} mode 600"
            + (f" user {user}" if user else ""),
            "    no log",
            f"    http-request set-header {RELAY_HEADER.decode()} 1",
            f"    default_backend peer{index}",
            "",
            f"backend peer{index}",
            f"    server p {_ip(backend.address)}:{backend.port} maxconn {limits.max_connections}",
            "",
        ]
    return Rendered("\n".join(out), files, frozenset(apps), str(maps))


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket HAProxy inherits: bound here, so that a port in use fails as the
    Python proxy's does and port 0 becomes a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1024)
    except OSError:
        listener.close()
        raise
    return listener


@dataclass(slots=True)
class HaproxyIngress:
    """Serves the node's ingress through HAProxy: `serve` runs it until cancelled."""

    routes: Callable[[], RouteTable]
    may_dial: Callable[[Backend], bool]
    metrics: IngressMetrics = field(default_factory=IngressMetrics)
    limits: ProxyLimits = field(default_factory=ProxyLimits)
    binary: str | None = None
    """`haproxy`; found on the PATH (and /usr/sbin) if None."""
    clock: Clock = field(default_factory=SystemClock)
    reloads: int = 0
    """Configurations loaded after the first (a changed route table), counted once a worker
    on the new one answers."""
    restarts: int = 0
    """Times HAProxy exited and was started again."""
    pid: int | None = None
    """HAProxy's master process, while it runs."""
    _running: Rendered | None = None
    _generation: int = 0
    _user: str | None = None

    async def serve(
        self, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on host:port until cancelled; `task_status` gets the bound address. HAProxy is
        started again, after RESTART_SECONDS, if it exits; if it cannot start at first, this
        fails with `HaproxyError` (an `OSError` if the address cannot be bound)."""
        binary = self.binary or find_haproxy()
        if binary is None:
            raise HaproxyError(f"haproxy is not installed (Debian package {HAPROXY_PACKAGE})")
        # Kept open here for the whole run: a restarted HAProxy inherits it again.
        listener = _bind(host, port)
        bound: tuple[str, int] = listener.getsockname()[:2]
        # Short: unix socket paths must fit 107 bytes.
        _remove_stale(Path(tempfile.gettempdir()))
        folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        try:
            (folder / "node.pid").write_text(str(os.getpid()))
            logs = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await logs.bind(str(folder / "log.sock"))
            logs.listen(8)
            self._user = _unprivileged(folder)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_logs, logs)
                await nursery.start(self._keep_running, binary, folder, listener)
                task_status.started(bound)
        finally:
            listener.close()
            shutil.rmtree(folder, ignore_errors=True)

    async def _keep_running(
        self,
        binary: str,
        folder: Path,
        listener: socket.socket,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run HAProxy on the current routes, reloading it as they change, and start it again
        when it exits. Reports started once it first answers; fails if it cannot start then."""
        started = False
        while True:
            self._running = None
            config = await self._write(binary, folder, listener.fileno(), self.routes())
            assert config is not None
            process = _spawn(binary, config, listener, folder)
            self.pid = process.pid
            try:
                worker = await self._started(process, folder)
                if not started:
                    started = True
                    task_status.started()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        self._watch, binary, folder, listener.fileno(), process, worker
                    )
                    code = await _exited(process)
                    nursery.cancel_scope.cancel()
                why = f"haproxy exited with status {code}: {_last_line(folder / 'haproxy.out')}"
            except HaproxyError as exc:
                if not started:
                    raise
                why = str(exc)
            finally:
                self.pid = None
                with trio.CancelScope(shield=True):
                    await _stop(process)
            self.restarts += 1
            log.error("ingress data plane: %s; starting it again in %g s", why, RESTART_SECONDS)
            await trio.sleep(RESTART_SECONDS)

    async def _write(
        self, binary: str, folder: Path, listener_fd: int, table: RouteTable
    ) -> Path | None:
        """Render `table` into a new generation of files, check it with `haproxy -c` and make
        it `haproxy.cfg`. None if it is what runs already."""
        rendered = render(
            table,
            folder=folder,
            maps=folder / f"g{self._generation + 1}",
            listener_fd=listener_fd,
            limits=self.limits,
            may_dial=self.may_dial,
            user=self._user,
            clients=_client_connections(),
        )
        if self._running is not None and _same(rendered, self._running):
            return None
        self._generation += 1
        maps = folder / f"g{self._generation}"
        try:
            maps.mkdir()
            for name, text in rendered.files.items():
                (maps / name).write_text(text)
            candidate = maps / "haproxy.cfg"
            candidate.write_text(rendered.config)
        except OSError as exc:
            raise HaproxyError(f"cannot write the configuration: {exc}") from None
        check = await trio.run_process(
            [binary, "-c", "-q", "-f", str(candidate)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            pass_fds=(listener_fd,),
        )
        if check.returncode != 0:
            shutil.rmtree(maps, ignore_errors=True)
            raise HaproxyError(
                "haproxy refused the ingress configuration: "
                + (check.stderr or check.stdout).decode(errors="replace").strip()
            )
        config = folder / "haproxy.cfg"
        os.replace(candidate, config)
        old = folder / f"g{self._generation - 2}"
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        self._running = rendered
        self.metrics.keep_only(rendered.apps)
        return config

    async def _started(
        self, process: subprocess.Popen[bytes], folder: Path, *, after: int | None = None
    ) -> int:
        """Wait until a worker of HAProxy answers on its stats socket (one other than the worker
        `after`, when reloading); its pid."""
        with trio.move_on_after(START_TIMEOUT_SECONDS):
            while process.poll() is None:
                worker = await _worker(folder / "admin.sock")
                if worker is not None and worker != after:
                    return worker
                await trio.sleep(0.02)
            raise HaproxyError(f"haproxy exited: {_last_line(folder / 'haproxy.out')}")
        raise HaproxyError(f"haproxy's worker did not answer in {START_TIMEOUT_SECONDS:g} s")

    async def _watch(
        self,
        binary: str,
        folder: Path,
        listener_fd: int,
        process: subprocess.Popen[bytes],
        worker: int,
    ) -> None:
        """Reload HAProxy when the rendered configuration changes; a reload is counted once
        its new worker answers (`worker`: the one running)."""
        table = self.routes()
        rendered_at = self.clock.monotonic()
        while True:
            await trio.sleep(REFRESH_SECONDS)
            current = self.routes()
            now = self.clock.monotonic()
            if current is table and now - rendered_at < RECHECK_SECONDS:
                continue
            table, rendered_at = current, now
            try:
                changed = await self._write(binary, folder, listener_fd, current)
            except HaproxyError as exc:
                log.error("ingress routes not applied: %s", exc)
                continue
            if changed is not None:
                process.send_signal(signal.SIGUSR2)
                worker = await self._started(process, folder, after=worker)
                self.reloads += 1
                log.debug("haproxy reloaded (generation %d)", self._generation)
                # Each reload leaves the old worker finishing its connections: routes that change
                # all the time must not pile them up.
                await trio.sleep(MIN_RELOAD_SECONDS)

    async def _read_logs(self, logs: trio.socket.SocketType) -> None:
        """Take the log of each worker of HAProxy (a reload starts a new one)."""
        with logs:
            async with trio.open_nursery() as nursery:
                while True:
                    connection, _ = await logs.accept()
                    nursery.start_soon(self._read_log, connection)

    async def _read_log(self, connection: trio.socket.SocketType) -> None:
        """One line per request: `APP STATUS MILLISECONDS` (`-` for no application)."""
        observe = self.metrics.observe
        pending = b""
        with connection:
            while chunk := await connection.recv(65536):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()[-LOG_LINE_BYTES:]
                for line in lines:
                    parts = line.split()
                    if len(parts) != 3 or not parts[1].isdigit():
                        continue
                    app = parts[0].decode(errors="replace")
                    milliseconds = int(parts[2]) if parts[2].isdigit() else 0  # -1: cut short
                    observe("" if app == "-" else app, int(parts[1]), milliseconds / 1000)
                await trio.sleep(LOG_READ_SECONDS)


def _client_connections() -> int:
    """MAX_CLIENT_CONNECTIONS, or fewer where the process may not open enough files: HAProxy
    needs two per connection (the client's and the replica's), and raises its own limit up to
    the hard one."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return MAX_CLIENT_CONNECTIONS
    return max(256, min(MAX_CLIENT_CONNECTIONS, (hard - 1024) // 2 - 512))


def _remove_stale(temp: Path) -> None:
    """Remove the folders of data planes whose node is gone (killed before it could)."""
    for folder in temp.glob(FOLDER_PREFIX + "*"):
        try:
            pid = int((folder / "node.pid").read_text())
        except (OSError, ValueError):
            # Being made (the pid is written just after), or left without one.
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def _unprivileged(folder: Path) -> str | None:
    """As root, HAProxy's workers run as Debian's `haproxy` user: the folder and its log socket
    are opened to that group only. None (HAProxy keeps the node's user) otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        group = grp.getgrnam(HAPROXY_USER).gr_gid
        pwd.getpwnam(HAPROXY_USER)
    except KeyError:
        log.warning("no %s user: haproxy's workers run as root", HAPROXY_USER)
        return None
    os.chown(folder, 0, group)
    folder.chmod(0o750)
    os.chown(folder / "log.sock", 0, group)
    (folder / "log.sock").chmod(0o660)
    return HAPROXY_USER


def _same(a: Rendered, b: Rendered) -> bool:
    """Whether two renderings configure the same thing (their map folders differ)."""
    return a.files == b.files and a.config.replace(a.maps, "") == b.config.replace(b.maps, "")


async def _worker(path: Path) -> int | None:
    """The pid of the worker of HAProxy that answers on the stats socket `path`, or None."""
    try:
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            await sock.connect(str(path))
            await sock.send(b"show info\n")
            answer = b""
            while chunk := await sock.recv(4096):
                answer += chunk
    except OSError:
        return None
    found = re.search(rb"^Pid: (\d+)$", answer, re.MULTILINE)
    return int(found.group(1)) if found else None


def _spawn(
    binary: str, config: Path, listener: socket.socket, folder: Path
) -> subprocess.Popen[bytes]:
    """Start HAProxy's master on `config`, inheriting `listener`. Call it from the thread the
    node's trio runs in, which lives as long as the node: the signal that stops HAProxy when the
    node dies follows the thread that started it (trio's own process start uses a worker
    thread, which ends when idle)."""
    with open(folder / "haproxy.out", "wb") as output:
        return subprocess.Popen(
            [binary, "-W", "-f", str(config)],
            pass_fds=(listener.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            preexec_fn=die_with_parent,
        )


async def _exited(process: subprocess.Popen[bytes]) -> int:
    """Wait for `process` to exit; its status."""
    # trio-typing's stubs predate `abandon_on_cancel`.
    return await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)  # type: ignore[call-arg]


async def _stop(process: subprocess.Popen[bytes]) -> None:
    """Hard-stop HAProxy's master (its workers go with it), killing it if it lingers."""
    if process.poll() is None:
        process.terminate()
        with trio.move_on_after(STOP_TIMEOUT_SECONDS):
            await _exited(process)
            return
        process.kill()
    await _exited(process)


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        alerts = [line for line in lines if "ALERT" in line]
        if alerts or lines:
            return (alerts or lines)[-1].strip()
    return "no output"
