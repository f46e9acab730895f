"""Timing helpers shared by the benchmarks (bench/risk.py, bench/risk_learned.py): progress lines, calls timed in a
dedicated thread, percentiles, the load average."""
from __future__ import annotations

import os
import statistics
import threading
import time


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def timed_in_thread(app, fn, count: int, cpu: list[float] | None = None) -> list[float]:
    """``fn`` run ``count`` times in a dedicated thread (with its own app context and database session); each
    call's duration in milliseconds (and, into ``cpu``, the thread's CPU time per call: what the machine's
    load inflates least)."""
    samples: list[float] = []

    def run():
        with app.app_context():
            for _ in range(count):
                started, used = time.perf_counter(), time.thread_time()
                fn()
                samples.append((time.perf_counter() - started) * 1000)
                if cpu is not None:
                    cpu.append((time.thread_time() - used) * 1000)
            from app.extensions import db
            db.session.remove()

    thread = threading.Thread(target=run, name="risk-bench")
    thread.start()
    thread.join()
    return samples


def summary(samples: list[float]) -> dict:
    """n, p50, p99 and max of samples (ms), rounded to microseconds."""
    ordered = sorted(samples)
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3), "max": round(ordered[-1], 3)}


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as RESULTS.md quotes them ("3.1, 2.8, 2.5")."""
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())
