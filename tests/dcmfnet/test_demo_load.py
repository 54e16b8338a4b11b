"""The demo under load, on this machine's loopback only: many clients at once, and an oversized upload.

The server is ``demo.launch`` (as ``dcmfnet demo`` runs it) in a child process with a tiny model, one
request at a time and a queue of :data:`QUEUE`. :data:`CLIENTS` clients (Gradio's own client, each
in a thread) send :data:`REQUESTS` requests each, all at once: every request must be answered or
refused with a reason (the queue is full), none lost or left waiting. The latency of the answered
ones (p50, p95) and the server's peak RSS are printed (``pytest -s`` shows them).

An upload over the cap is refused while it streams in: the server answers 413 before the client
has sent the file.
"""

from __future__ import annotations

import os
import re
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client", reason="the demo extra is not installed")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.utils import QueueError  # noqa: E402
from PIL import Image  # noqa: E402

from dcmfnet import demo  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 16
REQUESTS = 3  # per client: 48 in all, sized to keep the test short on a busy 2-core machine
QUEUE = 4
UPLOAD_CAP = 1 << 20
#: Seconds a request may take before it counts as lost (waiting without end is what the queue bound prevents).
REQUEST_TIMEOUT_S = 60.0

SERVER = """
import sys
import torch
from dcmfnet import demo
from tests.dcmfnet.test_demo import tiny_segmenter

torch.set_num_threads(1)
limits = demo.Limits(max_upload_bytes=int(sys.argv[2]), max_queue=int(sys.argv[3]))
demo.launch(demo.build_app(tiny_segmenter(), limits=limits, seed=0), host="127.0.0.1", port=int(sys.argv[1]),
            limits=limits)
"""

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = tmp_path_factory.mktemp("demo_load") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-c", SERVER, str(port), str(UPLOAD_CAP), str(QUEUE)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not start:\n" + log.read_text(errors="replace")
                time.sleep(0.3)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "share" not in log.read_text(errors="replace").lower()


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory of process ``pid`` (VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, flags=re.MULTILINE)
    assert match is not None, status
    return int(match.group(1)) / 1024


def test_many_clients_each_answered_or_refused(server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, process = server
    scene = demo.builtin_scene(3)
    picture = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(picture)
    answered: list[float] = []
    refused: list[str] = []
    lost: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client() -> None:
        # The answer is the result event; the pictures stay on the server (their URLs come back).
        visitor = Client(url, verbose=False, download_files=False)
        start.wait()  # every client sends its first request at the same moment
        for _ in range(REQUESTS):
            began = time.perf_counter()
            try:
                job = visitor.submit(handle_file(str(picture)), scene.expression, 0.5, api_name="/respond")
                message = job.result(timeout=REQUEST_TIMEOUT_S)[0]
                outcome = ("answered", time.perf_counter() - began) if "the request took" in message else None
                if outcome is None:
                    raise AssertionError(f"an answer without a result: {message}")
            except QueueError as error:
                outcome = ("refused", str(error))
            except Exception as error:
                outcome = ("lost", f"{type(error).__name__}: {error}")
            with lock:
                {"answered": answered, "refused": refused, "lost": lost}[outcome[0]].append(outcome[1])  # type: ignore[attr-defined]

    began = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REQUESTS * REQUEST_TIMEOUT_S + 60)
    wall = time.perf_counter() - began
    assert not any(thread.is_alive() for thread in threads), "a client is still waiting"
    total = CLIENTS * REQUESTS
    latencies = sorted(answered)
    p50 = statistics.median(latencies) if latencies else float("nan")
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))] if latencies else float("nan")
    rss = peak_rss_mib(process.pid)
    print(
        f"\ndemo under load: {CLIENTS} clients x {REQUESTS} requests = {total}; answered {len(answered)}, "
        f"refused {len(refused)}, lost {len(lost)}; latency of the answered p50 {p50:.2f} s, p95 {p95:.2f} s; "
        f"server peak RSS {rss:.0f} MiB; queue {QUEUE}, one at a time; {wall:.1f} s in all"
    )
    assert not lost, lost[:5]
    assert len(answered) + len(refused) == total
    assert answered, "no request was served"
    assert all("queue is full" in reason.lower() for reason in refused), sorted(set(refused))
    assert p95 < REQUEST_TIMEOUT_S


def test_upload_over_the_cap_is_refused_before_it_is_read_whole(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _ = server
    host, port = url.split("//")[1].rstrip("/").split(":")
    size = 64 * UPLOAD_CAP
    boundary = "----dcmfnetloadtest"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode()
    request = (
        f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + size + len(tail)}\r\nConnection: close\r\n\r\n"
    ).encode() + head
    chunk = b"\0" * (64 * 1024)
    sent = 0
    reply = b""
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        deadline = time.monotonic() + 60
        while sent < size and time.monotonic() < deadline:
            readable, _, _ = select.select([connection], [], [], 0)
            if readable:
                break  # the server answered before the body ended
            try:
                connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        try:
            connection.settimeout(30)
            while len(reply) < 4096:
                data = connection.recv(4096)
                if not data:
                    break
                reply += data
        except (ConnectionResetError, TimeoutError):
            pass
    print(f"\noversized upload: the server answered after {sent / 2**20:.1f} MiB of {size / 2**20:.0f} MiB")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b"maximum allowed size" in reply
    assert sent < size // 4, f"the server read {sent} of {size} bytes before refusing"
