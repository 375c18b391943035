"""`make bench` / `make bench-quick`: layer limits, then the saga end to end, then invariants.

Writes bench-results/latest.json, latest.md and latest.png. Exit status: 0 when the run
completed and every invariant holds, 1 when an invariant is broken, 2 when the saga could not
run end to end (the layer limits are still written).

    python tests/bench/run.py [--quick] [--reuse-infra] [--keep-infra] [--profile order,stock]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import platform
import pstats
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import invariants
import layers
import psutil
import report
from benchinfra import ROOT, BenchInfra, Services
from e2e import EndToEnd, NotReady

OUT = ROOT / "bench-results"


@dataclass(frozen=True)
class Plan:
    fsync_seconds: int
    pgbench_seconds: int
    kafka_records: int
    loop_records: int
    loop_records_per_message: int
    rates: tuple[float, ...]
    step_seconds: float
    drain_seconds: float
    latency_seconds: float
    hot_fractions: tuple[float, ...]
    p99_limit_ms: float = 2000.0


FULL = Plan(
    fsync_seconds=2,
    pgbench_seconds=10,
    kafka_records=1_000_000,
    loop_records=30_000,
    loop_records_per_message=1_000,
    rates=(100, 200, 400, 800, 1200, 1600, 2000, 2500),
    step_seconds=20,
    drain_seconds=30,
    latency_seconds=30,
    hot_fractions=(0.5, 1.0, 1.5),
)
QUICK = Plan(
    fsync_seconds=1,
    pgbench_seconds=3,
    kafka_records=200_000,
    loop_records=10_000,
    loop_records_per_message=300,
    rates=(200, 500, 1000, 1600),
    step_seconds=5,
    drain_seconds=8,
    latency_seconds=6,
    hot_fractions=(1.0,),
)


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


async def measure_layers(infra: BenchInfra, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log("PostgreSQL commit latency (pg_test_fsync)")
    out["pg_test_fsync"] = await asyncio.to_thread(layers.pg_test_fsync, infra, plan.fsync_seconds)
    log(f"  fdatasync: {out['pg_test_fsync'].get('commit_fdatasync_ops_per_s')} ops/s")
    log("reservation SQL under pgbench")
    out["pgbench"] = await layers.pgbench_reservations(infra, plan.pgbench_seconds)
    log("Kafka perf tools")
    out["kafka"] = await layers.kafka_perf_tools(infra, plan.kafka_records)
    log("raw aiokafka loop vs backbone runtime loop")
    out["backbone"] = await layers.backbone(infra, plan.loop_records, plan.loop_records_per_message)
    return out


async def measure_e2e(
    infra: BenchInfra, plan: Plan, services: Services, standin: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"status": "ok"}
    if standin:
        out["stock"] = "STAND-IN (tests/bench/standin_stock.py): not the saga's figures"
    async with EndToEnd(infra, services) as run:
        log("seeding catalog and stock")
        setup = await run.seed(standin_stock=standin)
        await run.probe(setup.uniform)
        await run.quiesce(timeout_s=30)
        log("uniform SKUs: stepped open-loop ramp")
        uniform = await run.ramp(
            "uniform",
            setup.uniform,
            list(plan.rates),
            seconds=plan.step_seconds,
            drain_s=plan.drain_seconds,
            p99_limit_ms=plan.p99_limit_ms,
        )
        saturation = max(s.decisions_per_s for s in uniform)
        out["saturation_not_reached"] = not uniform[-1].saturated(plan.p99_limit_ms)
        out["saturation_orders_per_s"] = round(saturation, 1)
        log(f"saturation: {saturation:.1f} orders/s")
        latency = []
        for fraction in (0.5, 0.8):
            step = await run.step(
                f"at-{int(fraction * 100)}pct",
                setup.uniform,
                rate=round(saturation * fraction, 1),
                seconds=plan.latency_seconds,
                drain_s=plan.drain_seconds,
            )
            latency.append(step)
            await run.quiesce(timeout_s=max(30.0, plan.drain_seconds * 2))
        out["at_50pct"], out["at_80pct"] = (s.as_dict() for s in latency)
        log("hot SKU: stepped ramp")
        hot = await run.ramp(
            "hot",
            setup.hot,
            [round(saturation * f, 1) for f in plan.hot_fractions],
            seconds=plan.step_seconds,
            drain_s=plan.drain_seconds,
            p99_limit_ms=plan.p99_limit_ms,
        )
        out["hot_saturation_orders_per_s"] = round(max(s.decisions_per_s for s in hot), 1)
        out["uniform_steps"] = [s.as_dict() for s in uniform]
        out["latency_steps"] = [s.as_dict() for s in latency]
        out["hot_steps"] = [s.as_dict() for s in hot]
        await run.quiesce(timeout_s=60)
        assert run.admin is not None
        checks = await invariants.run_checks(run.admin, run.all_ids, stock_checks=not standin)
        out["invariants"] = checks
        out["invariants_ok"] = invariants.all_ok(checks)
        out["orders_submitted"] = len(run.all_ids)
        out["outbox_backlog_after"] = await run.outbox_backlog()
        out["consumer_lag_after"] = await run.consumer_lag()
    return out


async def profile_saturated(
    infra: BenchInfra, plan: Plan, rate: float, profiled: tuple[str, ...], standin: bool
) -> dict[str, Any]:
    """Restart the services with `profiled` under cProfile, offer `rate` for one step."""
    services = Services(profiled=profiled, standin_stock=standin)
    await asyncio.to_thread(services.start_all)
    try:
        async with EndToEnd(infra, services) as run:
            setup = await run.seed(standin_stock=standin)
            step = await run.step(
                "profiled",
                setup.uniform,
                rate=rate,
                seconds=max(plan.step_seconds, 10),
                drain_s=plan.drain_seconds,
            )
    finally:
        await asyncio.to_thread(services.stop_all)
    top: dict[str, str] = {}
    for service in profiled:
        path = services.profile_dir / f"{service}.prof"
        if not path.exists():
            top[service] = "(no profile written)"
            continue
        for order in ("tottime", "cumulative"):
            buffer = io.StringIO()
            stats = pstats.Stats(str(path), stream=buffer)
            stats.sort_stats(order).print_stats(40)
            (OUT / f"profile-{service}-{order}.txt").write_text(buffer.getvalue())
        buffer = io.StringIO()
        pstats.Stats(str(path), stream=buffer).sort_stats("tottime").print_stats(15)
        top[service] = buffer.getvalue().split("ncalls", 1)[-1][:3000]
    return {"rate": rate, "step": step.as_dict(), "top": top}


async def main_async(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    result: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in psutil.getloadavg()],
        },
        "plan": plan.__dict__,
    }
    infra = BenchInfra()
    if not args.reuse_infra:
        await asyncio.to_thread(infra.down)
        shutil.rmtree(infra.state, ignore_errors=True)
    log("bench infrastructure (own Kafka and PostgreSQL, profile `bench`)")
    await asyncio.to_thread(infra.up)
    exit_code = 0
    try:
        if not args.skip_layers:
            result["layers"] = await measure_layers(infra, plan)
        if not args.skip_e2e:
            services = Services(standin_stock=args.stand_in_stock)
            try:
                log("starting the five services")
                await asyncio.to_thread(services.start_all)
                result["e2e"] = await measure_e2e(infra, plan, services, args.stand_in_stock)
            except NotReady as exc:
                log(f"end to end not ready: {exc}")
                result["e2e"] = {"status": "not end-to-end ready", "reason": str(exc)}
                exit_code = 2
            except Exception as exc:  # noqa: BLE001 — the layer figures must still be written
                traceback.print_exc()
                result["e2e"] = {"status": "failed", "reason": repr(exc)[:500]}
                exit_code = 2
            finally:
                await asyncio.to_thread(services.stop_all)
            sat = result["e2e"].get("saturation_orders_per_s")
            if args.profile and sat:
                log(f"profiling {args.profile} at {sat * 1.25:.0f} orders/s")
                result["profile"] = await profile_saturated(
                    infra,
                    plan,
                    round(sat * 1.25, 1),
                    tuple(args.profile.split(",")),
                    args.stand_in_stock,
                )
    finally:
        if not args.keep_infra:
            await asyncio.to_thread(infra.down)
    result["summary"] = report.summary(result)
    result["seconds"] = round(time.monotonic() - started, 1)
    if result["summary"]["invariants_ok"] is False:
        exit_code = 1
    result["exit_code"] = exit_code
    OUT.mkdir(exist_ok=True)
    report.write_json(OUT / "latest.json", {**result["summary"], **result})
    report.write_markdown(OUT / "latest.md", result)
    report.write_plot(OUT / "latest.png", result)
    log(f"wrote {OUT}/latest.{{json,md,png}} in {result['seconds']:.0f}s; exit {exit_code}")
    return exit_code


def main() -> int:
    # aiokafka logs a retried NotLeaderForPartition while a fresh topic elects its leaders.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (under 3 minutes)")
    parser.add_argument(
        "--reuse-infra",
        action="store_true",
        help="keep the bench profile's data instead of starting afresh",
    )
    parser.add_argument(
        "--keep-infra",
        action="store_true",
        help="leave the bench Kafka and PostgreSQL running afterwards",
    )
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument(
        "--stand-in-stock",
        action="store_true",
        help="diagnostic: replace the stock service by a stand-in that reserves everything",
    )
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--profile", default="", help="services to run under cProfile in an extra saturated step"
    )
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
