"""A stand-in worker process for the shared-breaker test: runs breaker commands read from stdin.

    python -m tests.psp.breaker_worker <key prefix>

Each stdin line is JSON {"op": ..., "now": <clock>, ...}; each answer one JSON line on stdout. Redis
comes from REDIS_URL, exactly as in a real worker; the clock is whatever the test says.
"""
import json
import os
import sys

import redis

from app.psp.breaker import BreakerRegistry, BreakerSettings


def main() -> None:
    prefix = sys.argv[1]
    now = {"value": 0.0}
    settings = BreakerSettings(failure_rate_threshold=50, minimum_calls=5, window_seconds=60, open_seconds=30,
                               half_open_probes=1, probe_timeout_seconds=30)
    registry = BreakerRegistry(redis.Redis.from_url(os.environ["REDIS_URL"]), settings,
                               clock=lambda: now["value"], prefix=prefix)
    permits = {}
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        now["value"] = command.get("now", now["value"])
        breaker = registry.get(command.get("connector", "sandbox"))
        op = command["op"]
        if op == "allow":
            permit = breaker.allow()
            permits[command.get("id", "last")] = permit
            answer = {"allowed": permit.allowed, "state": permit.state.value, "probe": permit.probe_token is not None}
        elif op == "failures":
            states = [breaker.record_failure().value for _ in range(command["count"])]
            answer = {"states": states}
        elif op == "success":
            answer = {"state": breaker.record_success(permits.pop(command.get("id", "last"), None)).value}
        elif op == "failure":
            answer = {"state": breaker.record_failure(permits.pop(command.get("id", "last"), None)).value}
        elif op == "snapshot":
            snap = breaker.snapshot()
            answer = {"state": snap.state.value, "failures": snap.failures, "forced": snap.forced}
        elif op in ("force_open", "force_close", "reset"):
            answer = {"state": getattr(breaker, op)().value}
        else:
            answer = {"error": f"unknown op {op}"}
        answer["pid"] = os.getpid()
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
