"""A load test of ``odlite serve``: clients POSTing /tag to a real server on loopback (make bench)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path


@contextlib.contextmanager
def serving(model: Path, *options: str):
    """``odlite serve --model MODEL OPTIONS`` on a free loopback port, answering /health: (its URL, its process)."""
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--model", str(model), "--port", str(port), *options]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def load_test(model: Path, jpeg: bytes, interpreters: int, clients: int, seconds: float, *options: str) -> dict:
    """``clients`` threads POST /tag for ``seconds`` against a real server on loopback."""
    import statistics
    import threading

    import httpx

    with serving(model, "--interpreters", str(interpreters), *options) as (url, _):
        latencies, errors, lock = [], [0], threading.Lock()
        deadline = time.monotonic() + seconds

        def client():
            with httpx.Client(timeout=30) as http:
                while time.monotonic() < deadline:
                    start = time.perf_counter()
                    try:
                        ok = http.post(f"{url}/tag", files={"file": ("p.jpg", jpeg, "image/jpeg")}).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        if ok:
                            latencies.append((time.perf_counter() - start) * 1000)
                        else:
                            errors[0] += 1

        threads = [threading.Thread(target=client) for _ in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "interpreters": interpreters,
        "options": " ".join(options),
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies) + errors[0],
        "errors": errors[0],
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49], 1),
        "p99_ms": round(cuts[98], 1),
    }
