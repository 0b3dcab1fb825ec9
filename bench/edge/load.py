"""Load for bench/edge/run.sh: /healthz latency without and with a slow-client flood."""

import asyncio
import json
import os
import sys
import time

HOST, PORT = sys.argv[1].rsplit(":", 1)
PORT = int(PORT)
HALF_OPEN = int(os.environ["HALF_OPEN"])
SLOW = int(os.environ["SLOW"])
ADDRS = int(os.environ["ADDRS"])
REQUESTS = int(os.environ["REQUESTS"])
CONCURRENCY = int(os.environ["CONCURRENCY"])
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


async def probe():
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(HOST, PORT)
    writer.write(REQUEST)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {answer[:80]!r}")
    return time.perf_counter() - started


async def measure():
    latencies = []
    queue = iter(range(REQUESTS))

    async def worker():
        for _ in queue:
            latencies.append(await probe())

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 3)

    return {"requests": len(latencies), "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


held = {"half_open": 0, "slow": 0, "reopened": 0}


async def attacker(n, slow, stop):
    source = f"127.0.{1 + n % ADDRS // 250}.{1 + n % ADDRS % 250}"
    kind = "slow" if slow else "half_open"
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, PORT, local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(0.1)
            continue
        held[kind] += 1
        try:
            if slow:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
                while not stop.is_set():
                    writer.write(b"a")
                    await writer.drain()
                    try:
                        if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                            break
                    except asyncio.TimeoutError:
                        pass
            else:
                await reader.read()  # until the gateway closes it
        except OSError:
            pass
        finally:
            held[kind] -= 1
            held["reopened"] += 1
            writer.close()


async def main():
    baseline = await measure()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(attacker(n, False, stop)) for n in range(HALF_OPEN)]
    tasks += [asyncio.create_task(attacker(n, True, stop)) for n in range(SLOW)]
    while held["half_open"] + held["slow"] < 0.9 * (HALF_OPEN + SLOW):
        await asyncio.sleep(0.1)
    at_start = dict(held)
    flooded = await measure()
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({
        "bench": "edge-healthz",
        "half_open": HALF_OPEN,
        "slow_senders": SLOW,
        "held_at_start": at_start,
        "baseline": baseline,
        "flooded": flooded,
        "p99_ratio": round(flooded["p99_ms"] / baseline["p99_ms"], 2) if baseline["p99_ms"] else None,
    }))


asyncio.run(main())
