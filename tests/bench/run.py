"""`make bench` / `make bench-quick`: layer limits, then the saga end to end, then invariants.

Writes bench-results/latest.json, latest.md and latest.png. Exit status: 0 when the run
completed and every invariant holds, 1 when an invariant is broken, 2 when the saga could not
run end to end (the layer limits are still written).

    python tests/bench/run.py [--quick] [--reuse-infra] [--keep-infra] [--profile order,stock]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
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
import pyspy
import report
import stock_reserve
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
    reserve_skus: int
    reserve_commands: int
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
    reserve_skus=10_000,
    reserve_commands=20_000,
)
QUICK = Plan(
    fsync_seconds=1,
    pgbench_seconds=2,
    kafka_records=100_000,
    loop_records=10_000,
    loop_records_per_message=300,
    rates=(200, 500, 1000, 1600),
    step_seconds=5,
    drain_seconds=8,
    latency_seconds=6,
    hot_fractions=(1.0,),
    # 10,000 SKUs take about two minutes to receive (stock applies ~100 receipts/s here).
    reserve_skus=500,
    reserve_commands=1_500,
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
    infra: BenchInfra, plan: Plan, services: Services, standin: bool, profile: tuple[str, ...]
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
        if profile:
            out["profile"] = await profile_step(run, setup.uniform, plan, saturation, profile)
        await run.quiesce(timeout_s=60)
        if not standin:
            out["stock_reserve"] = await measure_stock_reserve(infra, plan, services, run)
        assert run.admin is not None
        out["invariants"] = await check_invariants(run, standin)
        out["invariants_ok"] = invariants.all_ok(out["invariants"])
        out["orders_submitted"] = len(run.all_ids)
        out["outbox_backlog_after"] = await run.outbox_backlog()
        out["consumer_lag_after"] = await run.consumer_lag()
    return out


async def measure_stock_reserve(
    infra: BenchInfra, plan: Plan, services: Services, run: EndToEnd
) -> dict[str, Any]:
    """Issue 4's figures: the real stock service answering ReserveStock, hot vs uniform."""
    log(f"stock reserve: hot SKU vs {plan.reserve_skus:,} uniform SKUs (order service stopped)")
    await asyncio.to_thread(services.stop, "order")
    try:
        return await stock_reserve.measure(
            infra,
            run.process_groups(),
            skus=plan.reserve_skus,
            commands=plan.reserve_commands,
        )
    except Exception as exc:  # noqa: BLE001 — the saga's figures and invariants must still be written
        traceback.print_exc()
        return {"error": repr(exc)[:500]}


async def check_invariants(run: EndToEnd, standin: bool) -> dict[str, Any]:
    """Every invariant over the bench's schemas; a checker that fails counts as broken."""
    assert run.admin is not None
    try:
        if standin:
            return await invariants.run_checks(run.admin, run.all_ids, stock_checks=False)
        return await invariants.run_checks(run.admin, run.all_ids)
    except Exception as exc:  # noqa: BLE001 — an unrunnable check must fail the run, not crash it
        traceback.print_exc()
        return {"invariant_checker": {"ok": False, "error": repr(exc)[:500]}}


async def profile_step(
    run: EndToEnd, catalog: Any, plan: Plan, saturation: float, names: tuple[str, ...]
) -> dict[str, Any]:
    """One step at 1.25 x saturation with py-spy sampling the named services meanwhile."""
    if pyspy.binary() is None:
        log("py-spy is not installed (requirements/requirements.in); no profile")
        return {"error": "py-spy not installed"}
    await run.quiesce(timeout_s=60)
    rate = round(saturation * 1.25, 1)
    seconds = max(plan.step_seconds, 8)
    pids = {n: p for n, p in run.services.pids().items() if n in names or "all" in names}
    log(f"profiling {', '.join(pids)} with py-spy at {rate:.0f} orders/s")
    recording = asyncio.create_task(pyspy.record(pids, seconds, OUT / "profiles"))
    step = await run.step(
        "profiled", catalog, rate=rate, seconds=seconds, drain_s=plan.drain_seconds
    )
    files = await recording
    profiles = {name: pyspy.summarize(path, seconds) for name, path in files.items()}
    for name, summary in profiles.items():
        log(f"  {name}: {summary['busy_percent']}% of a core sampled busy")
    return {"rate": rate, "seconds": seconds, "step": step.as_dict(), "services": profiles}


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
            profile = tuple(p for p in args.profile.split(",") if p)
            services = Services(standin_stock=args.stand_in_stock)
            try:
                log("starting the five services")
                await asyncio.to_thread(services.start_all)
                result["e2e"] = await measure_e2e(
                    infra, plan, services, args.stand_in_stock, profile
                )
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
        "--profile",
        default="",
        help="services to sample with py-spy in an extra step at 1.25 × saturation "
        "(comma-separated, or `all`)",
    )
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
