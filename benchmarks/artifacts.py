"""Upload and download throughput through the running API, against the disk's own baseline.

Baseline (same run, same disk, same file): read + sha256 + write a copy and fsync it, in 1 MiB
chunks. Each measurement starts after ``os.sync()`` so none pays for another's dirty pages.
Upload: what `shelf register` does (hash and send a big file at once, digest last; register).
Download: what `shelf download` does (stream, sha256-verify, write, rename into place).
Also the server's peak RSS (VmHWM) after a small and after a large upload: constant-memory
streaming means the large one adds little.

    python benchmarks/artifacts.py [--size-mb 1024] [--small-mb 16] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from shelf import Client

CHUNK = 1024 * 1024


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_file(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with path.open("wb") as handle:
        for i in range(size // CHUNK):
            handle.write(block[i % 7 :] + block[: i % 7])  # distinct chunks, cheap to make
        handle.write(os.urandom(size % CHUNK))


def baseline_copy(source: Path, target: Path) -> float:
    os.sync()
    start = time.perf_counter()
    digest = hashlib.sha256()
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELF_")}
    env["SHELF_HOME"] = str(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "shelf", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start")


def register(client: Client, name: str, path: Path) -> tuple[float, dict[str, object]]:
    os.sync()  # every contender starts with no dirty pages queued by the one before
    start = time.perf_counter()
    version = client.register(name, path)
    return time.perf_counter() - start, version


def download(client: Client, name: str, version: dict[str, object], out: Path) -> float:
    os.sync()
    start = time.perf_counter()
    client.download(f"{name}@{version['version']}", out)
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--small-mb", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dir", type=Path, default=None, help="Work directory (same disk)")
    args = parser.parse_args()
    size_mb = 256 if args.quick else args.size_mb
    work = Path(tempfile.mkdtemp(prefix="shelf-bench-", dir=args.dir))
    try:
        small, large = work / "small.bin", work / "large.bin"
        make_file(small, args.small_mb * CHUNK)
        make_file(large, size_mb * CHUNK)
        # Warm the page cache for every contender alike. On a VM the first touch of guest memory
        # is several times slower than reuse, so touch as much as the later phases will write.
        for _ in range(3):
            baseline_copy(large, work / "warm.bin")
        make_file(work / "scratch.bin", 3 * size_mb * CHUNK)
        (work / "scratch.bin").unlink()
        baseline_s = baseline_copy(large, work / "copy.bin")
        process, url = start_server(work / "home")
        client = Client(url, timeout_s=600)
        try:
            register(client, "small", small)
            rss_small = peak_rss_mib(process.pid)
            upload_s, version = register(client, "large", large)
            rss_large = peak_rss_mib(process.pid)
            download_s = download(client, "large", version, work / "out")
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mb = size_mb * CHUNK / 1e6
    result = {
        "size_mb": size_mb,
        "baseline_mb_s": round(mb / baseline_s, 1),
        "upload_mb_s": round(mb / upload_s, 1),
        "download_mb_s": round(mb / download_s, 1),
        "upload_ratio": round(baseline_s / upload_s, 3),
        "download_ratio": round(baseline_s / download_s, 3),
        "server_peak_rss_small_mib": round(rss_small, 1),
        "server_peak_rss_large_mib": round(rss_large, 1),
        "server_peak_rss_growth_mib": round(rss_large - rss_small, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"file: {size_mb} MiB (small upload: {args.small_mb} MiB)")
    print(f"{'':22}{'MB/s':>10}{'ratio to baseline':>20}")
    print(f"{'baseline copy+sha256':22}{result['baseline_mb_s']:>10}{1.0:>20.3f}")
    print(f"{'upload (register)':22}{result['upload_mb_s']:>10}{result['upload_ratio']:>20.3f}")
    print(
        f"{'download (verified)':22}{result['download_mb_s']:>10}{result['download_ratio']:>20.3f}"
    )
    print(
        f"server peak RSS: {result['server_peak_rss_small_mib']} MiB after {args.small_mb} MiB, "
        f"{result['server_peak_rss_large_mib']} MiB after {size_mb} MiB "
        f"(growth {result['server_peak_rss_growth_mib']} MiB)"
    )


if __name__ == "__main__":
    main()
