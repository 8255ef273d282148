"""Replay the recorded conversations of a real ktserver against a server, and compare.

``tests/data/conformance/{http,binary,lua}.json`` hold what a real ktserver
answered (see the README there).  :func:`replay_scenario` sends a scenario's
steps on **one** keep-alive connection (HTTP requests encoded with the recorded
column encoding, binary frames from ``request_hex``, ``sleep`` steps honoured)
and returns a list of human-readable mismatches, empty when the server answered
like the real one under the README's rules:

* ``xt`` values (and get_bulk expiry fields) are compared as offsets from the
  recording time, with a few seconds of slack;
* ``report``/``status`` rows are compared by name only;
* any valid response colenc is accepted when the decoded rows match.

Only raw sockets and the protocol core are used: this must not depend on the
client under test.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import time
from pathlib import Path
from typing import Any

from ktstore.errors import Incomplete
from ktstore.protocol import binary, http, tsv
from ktstore.protocol.limits import XTMAX

CONFORMANCE = Path(__file__).resolve().parent / "data" / "conformance"
# Seconds of tolerance on expiration times.  Times are compared as offsets from
# the scenario's ``started_unix`` (or the file's ``recorded_at_unix``): the
# replay shifts absolute times in requests by (our start - recorded start) and
# expects the same shift in the answers.
XT_SLACK = 3
_NAMES_ONLY = {"/rpc/report", "/rpc/status"}
_XT_KEYS = {b"xt"}


def load(kind: str) -> dict[str, Any]:
    """The parsed JSON of ``http``, ``binary`` or ``lua``."""
    with open(CONFORMANCE / f"{kind}.json", encoding="utf-8") as f:
        return json.load(f)


def scenarios(kind: str) -> list[dict[str, Any]]:
    return load(kind)["scenarios"]


def unb64(text: str | None) -> bytes:
    """A recorded string: ``b64:`` prefix = base64 bytes, else the text itself."""
    if text is None:
        return b""
    if text.startswith("b64:"):
        return base64.b64decode(text[4:])
    return text.encode("utf-8")


def server_options(scenario: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Split a scenario's server_args into (script path, other args), resolving probe.lua."""
    script = None
    args: list[str] = []
    it = iter(scenario.get("server_args") or [])
    for arg in it:
        if arg == "-scr":
            script = str(CONFORMANCE / Path(next(it)).name)
        else:
            args.append(arg)
    return script, args


def uses_scripting(scenario: dict[str, Any]) -> bool:
    """Whether any step calls a Lua procedure (HTTP play_script or binary 0xB4)."""
    for step in scenario["steps"]:
        req = step.get("request")
        if req and req.get("path", "").startswith("/rpc/play_script"):
            return True
        if step.get("request_hex", "").startswith("b4"):
            return True
    return False


class _Conn:
    """A socket with a receive buffer driving the protocol parsers."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def fill(self, need: int) -> None:
        while len(self.buf) < need:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def parse(self, fn: Any, *args: Any) -> Any:
        while True:
            try:
                result, end = fn(self.buf, 0, *args)
            except Incomplete as inc:
                self.fill(max(inc.need, len(self.buf) + 1))
                continue
            self.buf = self.buf[end:]
            return result

    def pending(self, wait: float = 0.05) -> bool:
        """Whether the server sent (or closed) anything within ``wait`` seconds."""
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], wait)
        return bool(r)

    def closed(self, wait: float = 2.0) -> bool:
        """Whether the server closed the connection (EOF) within ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def _header(headers: Any, name: str) -> str | None:
    name = name.lower()
    items = headers.items() if isinstance(headers, dict) else headers
    for k, v in items:
        if k.lower() == name:
            return v
    return None


def _shift_request(req: dict[str, Any], shift: int) -> dict[str, Any]:
    """Move absolute (negative) ``xt`` parameters by ``shift`` seconds."""
    if not shift or "pairs" not in req:
        return req
    pairs = []
    for k, v in req["pairs"]:
        if k == "xt" and v.startswith("-") and v[1:].isdigit():
            v = str(-(int(v[1:]) + shift))
        pairs.append([k, v])
    return {**req, "pairs": pairs}


def _shift_frame(frame: bytes, shift: int) -> bytes:
    """Move absolute (negative) xt fields of a set_bulk frame by ``shift`` seconds."""
    if not shift or not frame or frame[0] != binary.MAGIC_SET_BULK:
        return frame
    try:
        req, end = binary.parse_request(frame, 0)
    except Exception:
        return frame  # deliberately malformed: send as recorded
    if end != len(frame) or not any(xt < 0 for _, _, _, xt in req.records):
        return frame
    recs = [(d, k, v, -(-xt + shift) if xt < 0 else xt) for d, k, v, xt in req.records]
    return binary.encode_set_bulk(recs, no_reply=req.no_reply)


def _encode_http(req: dict[str, Any]) -> bytes:
    headers: list[tuple[str, str]] = [("Host", "localhost")]
    for k, v in (req.get("headers") or {}).items():
        headers.append((k, v))
    if "pairs" in req:
        pairs = [(unb64(k), unb64(v)) for k, v in req["pairs"]]
        colenc = req.get("colenc")
        body = tsv.encode_tsv(pairs, colenc)
        headers.append(("Content-Type", tsv.content_type_for(colenc)))
    else:
        body = unb64(req.get("body")) if req.get("body") is not None else b""
    return http.encode_request(req["method"], req["path"], headers, body)


def _read_http(conn: _Conn, method: str) -> tuple[Any, bytes]:
    head = conn.parse(http.parse_response_head)
    if method == "HEAD" or head.status in (204, 304):
        return head, b""
    framing, length = http.body_framing(head)
    if framing == "length":
        conn.fill(length)
        body, conn.buf = conn.buf[:length], conn.buf[length:]
    elif framing == "chunked":
        body = conn.parse(http.parse_chunked)
    elif framing == "close":
        chunks = [conn.buf]
        while True:
            c = conn.sock.recv(65536)
            if not c:
                break
            chunks.append(c)
        body, conn.buf = b"".join(chunks), b""
    else:
        body = b""
    return head, body


def _rows(pairs: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return dict(pairs)


def _compare_pairs(
    where: str,
    path: str,
    expected: list[tuple[bytes, bytes]],
    got: list[tuple[bytes, bytes]],
    shift: int,
) -> list[str]:
    exp, act = _rows(expected), _rows(got)
    if path.partition("?")[0] in _NAMES_ONLY:
        missing = sorted(set(exp) - set(act))
        return [f"{where}: rows missing: {missing}"] if missing else []
    problems = []
    if set(exp) != set(act):
        problems.append(f"{where}: row names differ: expected {sorted(exp)}, got {sorted(act)}")
    for k in sorted(set(exp) & set(act)):
        e, a = exp[k], act[k]
        if k in _XT_KEYS:
            try:
                if abs(int(a) - (int(e) + shift)) <= XT_SLACK:
                    continue
            except ValueError:
                pass
            problems.append(f"{where}: {k!r}: xt expected {int(e) + shift} (shifted), got {a!r}")
        elif e != a:
            problems.append(f"{where}: {k!r}: expected {e!r}, got {a!r}")
    return problems


def _http_step(conn: _Conn, i: int, step: dict[str, Any], shift: int) -> list[str]:
    req, exp = step["request"], step["response"]
    where = f"step {i} {req['method']} {req['path']}"
    conn.sock.sendall(_encode_http(_shift_request(req, shift)))
    head, body = _read_http(conn, req["method"])
    problems = []
    if head.status != exp["status"]:
        problems.append(
            f"{where}: status expected {exp['status']}, got {head.status} body={body[:200]!r}"
        )
    ctype = _header(head.headers, "content-type")
    exp_ctype = exp.get("content_type")
    if exp_ctype is None:
        if ctype is not None and not req["path"].startswith("/rpc/"):
            problems.append(f"{where}: unexpected Content-Type {ctype!r}")
    else:
        if ctype is None:
            problems.append(f"{where}: Content-Type missing (expected {exp_ctype!r})")
            return problems
        media, colenc = tsv.parse_content_type(ctype)
        if media != tsv.parse_content_type(exp_ctype)[0]:
            problems.append(f"{where}: Content-Type expected {exp_ctype!r}, got {ctype!r}")
    for name, value in (exp.get("headers") or {}).items():
        got = _header(head.headers, name)
        if got != value:
            problems.append(f"{where}: header {name} expected {value!r}, got {got!r}")
    if "pairs" in exp:
        _, colenc = tsv.parse_content_type(ctype or "")
        got_pairs = tsv.decode_tsv(body, colenc)
        expected = [(unb64(k), unb64(v)) for k, v in exp["pairs"]]
        problems += _compare_pairs(where, req["path"], expected, got_pairs, shift)
    elif "body" in exp:
        if body != unb64(exp["body"]):
            problems.append(f"{where}: body expected {unb64(exp['body'])!r}, got {body!r}")
    return problems


def _binary_step(conn: _Conn, i: int, step: dict[str, Any], shift: int, last: bool) -> list[str]:
    request = _shift_frame(bytes.fromhex(step["request_hex"]), shift)
    expected = bytes.fromhex(step["response_hex"])
    where = f"step {i} binary {step['request_hex'][:24]}..."
    conn.sock.sendall(request)
    magic = request[0]
    if not expected:
        no_reply = len(request) >= 5 and request[4] & binary.FLAG_NOREPLY
        if (
            magic in (binary.MAGIC_SET_BULK, binary.MAGIC_REMOVE_BULK, binary.MAGIC_PLAY_SCRIPT)
            and no_reply
        ):
            if conn.pending(0.1):
                return [f"{where}: expected no reply, got data or a close"]
            return []
        if not conn.closed():
            return [f"{where}: expected the connection to be closed"]
        return []
    if expected == binary.ERROR_REPLY_BYTES:
        conn.fill(1)
        got, conn.buf = conn.buf[:1], conn.buf[1:]
        return [] if got == expected else [f"{where}: expected 0xBF, got {got.hex()}"]
    try:
        got = conn.parse(binary.parse_reply, magic)
    except ConnectionError as e:
        return [f"{where}: {e}"]
    want, _ = binary.parse_reply(expected, 0, magic)
    if magic == binary.MAGIC_GET_BULK and isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: expected {want}, got {got}"]
        problems = []
        for (d1, k1, v1, x1), (d2, k2, v2, x2) in zip(want, got, strict=False):
            if (d1, k1, v1) != (d2, k2, v2):
                problems.append(f"{where}: record expected {(d1, k1, v1)}, got {(d2, k2, v2)}")
            elif x1 >= XTMAX or x2 >= XTMAX:
                if x1 != x2:
                    problems.append(f"{where}: {k1!r} xt expected {x1}, got {x2}")
            elif abs(x2 - (x1 + shift)) > XT_SLACK:
                problems.append(f"{where}: {k1!r} xt expected {x1 + shift} (shifted), got {x2}")
        return problems
    if magic == binary.MAGIC_PLAY_SCRIPT and isinstance(want, list) and isinstance(got, list):
        if sorted(want) != sorted(got):
            return [f"{where}: expected {sorted(want)}, got {sorted(got)}"]
        return []
    return [] if want == got else [f"{where}: expected {want!r}, got {got!r}"]


def replay_scenario(host: str, port: int, scenario: dict[str, Any], recorded_at: int) -> list[str]:
    """Replay every step of ``scenario`` on one connection; returns the mismatches."""
    conn = _Conn(host, port)
    problems: list[str] = []
    shift = int(time.time()) - int(scenario.get("started_unix", recorded_at))
    steps = scenario["steps"]
    try:
        for i, step in enumerate(steps):
            if "sleep" in step:
                time.sleep(step["sleep"])
                continue
            if "request_hex" in step:
                problems += _binary_step(conn, i, step, shift, i == len(steps) - 1)
            else:
                problems += _http_step(conn, i, step, shift)
    except (ConnectionError, OSError) as e:
        problems.append(f"connection failed at step {i}: {e!r}")
    finally:
        conn.close()
    return problems


class RawClient(_Conn):
    """A minimal raw-socket client for server tests (protocol core only, no ktstore client)."""

    def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> tuple[Any, bytes]:
        hdrs = [("Host", "localhost"), *(headers or [])]
        self.sock.sendall(http.encode_request(method, path, hdrs, body))
        return _read_http(self, method)

    def rpc(
        self, name: str, pairs: Any = (), colenc: str | None = "B"
    ) -> tuple[int, dict[bytes, bytes]]:
        """POST /rpc/<name> with TSV pairs; returns (status, decoded output map)."""
        if isinstance(pairs, dict):
            pairs = list(pairs.items())
        enc = [
            (k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
            for k, v in pairs
        ]
        body = tsv.encode_tsv(enc, colenc)
        head, data = self.request(
            "POST", f"/rpc/{name}", [("Content-Type", tsv.content_type_for(colenc))], body
        )
        _, out_colenc = tsv.parse_content_type(_header(head.headers, "content-type") or "")
        return head.status, dict(tsv.decode_tsv(data, out_colenc))

    def binary(self, frame: bytes) -> Any:
        """Send a binary frame and parse the reply for its magic byte."""
        self.sock.sendall(frame)
        return self.parse(binary.parse_reply, frame[0])

    def header(self, head: Any, name: str) -> str | None:
        return _header(head.headers, name)
