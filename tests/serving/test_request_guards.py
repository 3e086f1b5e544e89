"""Nothing is read before it is authorised, uploads in flight are bounded, cross-site writes are refused (issue 26,
points 3 and 4), through the real servers: `team_server` (keys) and `live_server` (the loopback open mode)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import httpx

from tests.fixtures.live_server import LiveServer
from tests.fixtures.teams import ADMIN_KEY, ENG_KEY, HR_KEY, WRONG_KEY, bearer

BOUNDARY = "guardboundary"


def _multipart_head(path: str, length: int, headers: dict[str, str], port: int) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in headers.items()),
        "",
        "",
    ]
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n\r\n'
    return "\r\n".join(lines).encode() + part.encode()


@contextmanager
def _stalled_upload(server: LiveServer, path: str, headers: dict[str, str]) -> Iterator[socket.socket]:
    """An upload that declares 2.5 MB and sends only its first bytes, holding the request open."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(_multipart_head(path, 2_500_000, headers, server.port) + b"x" * 1024)
        yield sock
    finally:
        sock.close()


def _answer(sock: socket.socket, timeout: float = 5) -> str:
    sock.settimeout(timeout)
    try:
        return sock.recv(65536).decode("latin-1")
    except TimeoutError:
        return ""  # nothing answered: the server is still reading the body


def test_credentials_are_checked_before_the_body_is_read(team_server: LiveServer) -> None:
    for headers, status in (({}, "401"), (bearer(WRONG_KEY), "401"), (bearer(HR_KEY), "403")):
        path = "/v1/training/files" if status == "403" else "/v1/documents"  # an admin-only upload route for 403
        with _stalled_upload(team_server, path, headers) as sock:
            started = time.monotonic()
            answer = _answer(sock)
            assert answer.startswith(f"HTTP/1.1 {status}"), (headers, answer[:200])
            assert time.monotonic() - started < 5  # answered with 2.5 MB still unsent
    with _stalled_upload(team_server, "/v1/documents", bearer(ADMIN_KEY)) as sock:
        assert _answer(sock, timeout=2) == ""  # a valid key: the server waits for the body, as it should
    guard = team_server.app.state.upload_guard
    _until(lambda: not guard.in_flight)  # the client went away: its upload slot comes back


def _until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.05)


def test_uploads_in_flight_are_bounded_per_key(team_server: LiveServer) -> None:
    limit = team_server.state.settings.server.max_uploads_in_flight_per_key
    guard = team_server.app.state.upload_guard
    _until(lambda: not guard.in_flight)  # an earlier test's closed uploads give their slots back
    with ExitStack() as stack:
        for _ in range(limit):
            stack.enter_context(_stalled_upload(team_server, "/v1/documents", bearer(ADMIN_KEY)))
        _until(lambda: sum(guard.in_flight.values()) >= limit)  # the held uploads take their slots once checked
        assert sum(guard.in_flight.values()) == limit, guard.in_flight
        with _stalled_upload(team_server, "/v1/documents", bearer(ADMIN_KEY)) as extra:
            answer = _answer(extra)
            assert answer.startswith("HTTP/1.1 429") and "retry-after: 2" in answer.lower(), answer[:300]
        files = [("files", ("ok.txt", b"Another key still uploads while the admin key is at its limit."))]
        other = httpx.post(
            f"{team_server.base_url}/v1/documents",
            files=files,
            data={"collection": "eng"},
            headers=bearer(ENG_KEY),
            timeout=60,
        )
        assert other.status_code == 200, other.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        files = [("files", ("after.txt", b"The slots come back when the stalled clients go away."))]
        response = httpx.post(
            f"{team_server.base_url}/v1/documents", files=files, data={"collection": "hr"}, headers=bearer(ADMIN_KEY)
        )
        if response.status_code != 429:
            break
        time.sleep(0.2)
    assert response.status_code == 200, response.text


def _upload(server: LiveServer, headers: dict[str, str], name: str) -> httpx.Response:
    files = [("files", (name, f"Cross-site check {name}: the library opens at nine.".encode()))]
    return httpx.post(f"{server.base_url}/v1/documents", files=files, headers=headers, timeout=60)


def _stored(server: LiveServer, name: str) -> bool:
    listing = httpx.get(f"{server.base_url}/v1/documents", params={"limit": 1000}, timeout=30).json()["data"]
    return any(str(doc.get("source", "")).endswith(name) for doc in listing)


def test_cross_site_writes_are_refused_in_open_mode(live_server: LiveServer) -> None:
    own = f"http://127.0.0.1:{live_server.port}"
    refused = {
        "evil-origin.txt": {"Origin": "https://evil.example"},
        "evil-fetch-site.txt": {"Sec-Fetch-Site": "cross-site"},
        "null-origin.txt": {"Origin": "null"},
        "plain-form.txt": {"Origin": own, "Sec-Fetch-Site": "same-origin"},  # a form post: no JSON, no header
    }
    for name, headers in refused.items():
        response = _upload(live_server, headers, name)
        assert response.status_code == 403, (name, response.text)
        assert response.json()["error"]["type"] == "permission_error"
        assert not _stored(live_server, name)
    activation = httpx.post(
        f"{live_server.base_url}/v1/adapters/anything/activate", headers={"Origin": "https://evil.example"}
    )
    assert activation.status_code == 403  # a body-less POST needs no preflight: refused all the same
    console = _upload(live_server, {"Origin": own, "Sec-Fetch-Site": "same-origin", "X-Requested-With": "x"}, "c.txt")
    assert console.status_code == 200, console.text
    assert _upload(live_server, {}, "curl.txt").status_code == 200  # no browser headers: an API client
    assert _stored(live_server, "c.txt") and _stored(live_server, "curl.txt")
