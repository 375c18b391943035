"""bench-results/latest.{json,md,png} from one run's figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def layer_limits(layers: dict[str, Any]) -> dict[str, float]:
    """Throughput ceilings (per second) of each layer, best configuration of each."""
    limits = {
        "postgres_commit_fdatasync_ops": _get(
            layers, "pg_test_fsync", "commit_fdatasync_ops_per_s"
        ),
        "pg_reservations_10000_rows_100_per_tx": _get(
            layers, "pgbench", "rows_10000_100_per_tx", "reservations_per_s"
        ),
        "pg_reservations_10000_rows_1_per_tx": _get(
            layers, "pgbench", "rows_10000_1_per_tx", "reservations_per_s"
        ),
        "pg_reservations_hot_row_100_per_tx": _get(
            layers, "pgbench", "hot_row_100_per_tx", "reservations_per_s"
        ),
        "pg_reservations_hot_row_1_per_tx": _get(
            layers, "pgbench", "hot_row_1_per_tx", "reservations_per_s"
        ),
        "kafka_producer_perf": _get(layers, "kafka", "producer", "records_per_s"),
        "kafka_consumer_perf": _get(layers, "kafka", "consumer", "fetch_records_per_s"),
        "raw_aiokafka_loop": _get(layers, "backbone", "raw_aiokafka_loop", "msgs_per_s"),
        "runtime_loop_batched": _get(layers, "backbone", "runtime_loop_batched", "msgs_per_s"),
        "runtime_loop_per_message": _get(
            layers, "backbone", "runtime_loop_per_message", "msgs_per_s"
        ),
    }
    return {k: round(v, 1) for k, v in limits.items() if isinstance(v, int | float)}


# The ceilings an order meets on the batched hot path (per-message figures are there to show
# what batching buys, not as a path the services take).
HOT_PATH_LAYERS = (
    "pg_reservations_10000_rows_100_per_tx",
    "kafka_producer_perf",
    "kafka_consumer_perf",
    "raw_aiokafka_loop",
    "runtime_loop_batched",
)


def tightest(limits: dict[str, float]) -> tuple[str, float] | None:
    candidates = [(name, limits[name]) for name in HOT_PATH_LAYERS if name in limits]
    return min(candidates, key=lambda c: c[1]) if candidates else None


def ratio(a: Any, b: Any) -> float | None:
    return (
        round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    )


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The top-level keys of latest.json."""
    layers = result.get("layers", {})
    e2e = result.get("e2e", {})
    limits = layer_limits(layers)
    tight = tightest(limits)
    saturation = e2e.get("saturation_orders_per_s")
    half = e2e.get("at_50pct") or {}
    eighty = e2e.get("at_80pct") or {}
    reserve = e2e.get("stock_reserve") or {}
    return {
        "saturation_orders_per_s": saturation,
        "p50_ms": half.get("p50_ms"),
        "p95_ms": half.get("p95_ms"),
        "p99_ms": half.get("p99_ms"),
        "p50_ms_at_80pct": eighty.get("p50_ms"),
        "p95_ms_at_80pct": eighty.get("p95_ms"),
        "p99_ms_at_80pct": eighty.get("p99_ms"),
        "invariants_ok": e2e.get("invariants_ok"),
        "cpu_ms_per_order_at_50pct": half.get("cpu_ms_per_order"),
        "stock_reserve_commands_per_s": {
            "hot_sku": _get(reserve, "hot_sku", "reserve_commands_per_s"),
            "uniform_skus": _get(reserve, "uniform_skus", "reserve_commands_per_s"),
            "uniform_sku_count": _get(reserve, "uniform_skus", "skus"),
        },
        "layer_limits": limits,
        "tightest_layer": {"name": tight[0], "per_s": tight[1]} if tight else None,
        "ratios": {
            "e2e_over_tightest_layer": ratio(saturation, tight[1] if tight else None),
            "hot_over_uniform": ratio(e2e.get("hot_saturation_orders_per_s"), saturation),
            "stock_reserve_hot_over_uniform": reserve.get("hot_over_uniform"),
            "runtime_batched_over_per_message": _get(
                layers, "backbone", "batched_over_per_message"
            ),
            "runtime_over_raw_aiokafka": _get(layers, "backbone", "runtime_over_raw"),
            "pg_100_per_tx_over_1_per_tx": ratio(
                limits.get("pg_reservations_10000_rows_100_per_tx"),
                limits.get("pg_reservations_10000_rows_1_per_tx"),
            ),
        },
    }


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


VERDICT = {True: "all hold", False: "BROKEN", None: "not checked"}


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    s = result["summary"]
    e2e = result.get("e2e", {})
    layers = result.get("layers", {})
    lines = [
        f"# stockflow benchmark ({result['mode']}, {result['started_at']})",
        "",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['memory_gb']} GB; Kafka, "
        "PostgreSQL, the five services and the load generator all on it (bench profile: own "
        "broker and cluster).",
        "",
        "## Headline",
        "",
        f"- End to end: **{_n(s['saturation_orders_per_s'], 1)} orders/s** reach a decision at "
        "saturation"
        + (
            " (not reached: highest step still kept up)"
            if e2e.get("saturation_not_reached")
            else ""
        ),
        f"- Submission → `order.confirmed` at 50% of saturation: p50 {_n(s['p50_ms'], 1)} ms, "
        f"p95 {_n(s['p95_ms'], 1)} ms, p99 {_n(s['p99_ms'], 1)} ms",
        f"- At 80%: p50 {_n(s['p50_ms_at_80pct'], 1)} ms, p95 {_n(s['p95_ms_at_80pct'], 1)} ms, "
        f"p99 {_n(s['p99_ms_at_80pct'], 1)} ms",
        f"- Invariants: **{VERDICT[s['invariants_ok']]}**",
    ]
    per_order = s.get("cpu_ms_per_order_at_50pct") or {}
    if per_order:
        lines.append(
            f"- CPU per decided order at 50%: services {_n(per_order.get('services'), 2)} ms ("
            + ", ".join(
                f"{k} {v:.2f}"
                for k, v in sorted(per_order.items(), key=lambda kv: -kv[1])
                if k != "services" and v >= 0.05
            )
            + ")"
        )
    rsv = s.get("stock_reserve_commands_per_s") or {}
    if rsv.get("hot_sku") or rsv.get("uniform_skus"):
        lines.append(
            f"- Real stock service, one-line ReserveStock straight onto stock.commands.v1: "
            f"hot SKU {_n(rsv.get('hot_sku'))}/s, {_n(rsv.get('uniform_sku_count'))} uniform "
            f"SKUs {_n(rsv.get('uniform_skus'))}/s"
        )
    if _get(e2e, "stock_reserve", "error"):
        lines.append(f"- Stock reserve measurement failed: {e2e['stock_reserve']['error']}")
    if e2e.get("stock"):
        lines += ["", f"**Stock service: {e2e['stock']}.**"]
    if e2e.get("status") not in (None, "ok"):
        lines += ["", f"**End to end did not run: {e2e.get('status')}** — {e2e.get('reason', '')}"]
    r = s["ratios"]
    tight = s.get("tightest_layer") or {}
    lines += [
        "",
        "## Ratios",
        "",
        "| ratio | value |",
        "| --- | ---: |",
        f"| end to end ÷ tightest hot-path layer ({tight.get('name', '–')}, "
        f"{_n(tight.get('per_s'))}/s) | {_n(r['e2e_over_tightest_layer'], 3)} |",
        f"| hot SKU ÷ uniform (saturation) | {_n(r['hot_over_uniform'], 3)} |",
        f"| stock reserve commands/s, hot SKU ÷ uniform SKUs | "
        f"{_n(r.get('stock_reserve_hot_over_uniform'), 3)} |",
        f"| runtime loop batched ÷ per-message (max_records=1) | "
        f"{_n(r['runtime_batched_over_per_message'], 1)} |",
        f"| runtime loop ÷ raw aiokafka loop (issue 3) | {_n(r['runtime_over_raw_aiokafka'], 3)} |",
        f"| reservation SQL 100/tx ÷ 1/tx (10,000 rows) | "
        f"{_n(r['pg_100_per_tx_over_1_per_tx'], 1)} |",
        "",
        "An order crosses the consumer runtime at least three times before its decision "
        "(checkout → order, ReserveStock → stock, reply → order), each with its own "
        "transaction and outbox, all sharing two cores; end to end at 1/3 of the runtime "
        "loop's ceiling is therefore already at that ceiling.",
        "",
        "## Layer limits (same run)",
        "",
        "| layer | per second | note |",
        "| --- | ---: | --- |",
    ]
    fsync = layers.get("pg_test_fsync", {})
    lines.append(
        f"| PostgreSQL commit (pg_test_fsync, fdatasync, one 8 kB write) | "
        f"{_n(fsync.get('commit_fdatasync_ops_per_s'))} | "
        f"{_n(fsync.get('commit_fdatasync_latency_us'))} µs per commit |"
    )
    pgb = layers.get("pgbench", {})
    for key, label in (
        ("hot_row_1_per_tx", "reservation SQL, one hot row, 1 message/tx"),
        ("hot_row_100_per_tx", "reservation SQL, one hot row, 100 messages/tx"),
        ("rows_10000_1_per_tx", "reservation SQL, 10,000 rows, 1 message/tx"),
        ("rows_10000_100_per_tx", "reservation SQL, 10,000 rows, 100 messages/tx"),
    ):
        row = pgb.get(key, {})
        lines.append(
            f"| {label} | {_n(row.get('reservations_per_s'))} | "
            f"{_n(row.get('tps'))} tx/s, {_n(row.get('latency_avg_ms'), 1)} ms avg, "
            f"{pgb.get('clients', '–')} clients |"
        )
    kafka = layers.get("kafka", {})
    lines += [
        f"| Kafka ProducerPerformance ({kafka.get('record_size', '–')} B, acks=all, idempotent) | "
        f"{_n(_get(kafka, 'producer', 'records_per_s'))} | "
        f"{_n(_get(kafka, 'producer', 'mb_per_s'), 1)} MB/s |",
        f"| Kafka ConsumerPerformance (fetch rate) | "
        f"{_n(_get(kafka, 'consumer', 'fetch_records_per_s'))} | "
        f"{_n(_get(kafka, 'consumer', 'records_per_s'))}/s including the group join |",
    ]
    bb = layers.get("backbone", {})
    lines += [
        f"| raw aiokafka consume → produce → commit loop | "
        f"{_n(_get(bb, 'raw_aiokafka_loop', 'msgs_per_s'))} | "
        f"{_n(bb.get('record_bytes_avg'))} B checkout orders |",
        f"| runtime loop, batched (consume → tx + inbox → outbox → relay publish) | "
        f"{_n(_get(bb, 'runtime_loop_batched', 'msgs_per_s'))} | trivial forwarding handler |",
        f"| runtime loop, max_records=1 | {_n(_get(bb, 'runtime_loop_per_message', 'msgs_per_s'))}"
        " | one transaction and one offset commit per message |",
    ]
    for title, key in (
        ("Uniform SKUs", "uniform_steps"),
        ("Hot SKU", "hot_steps"),
        ("Latency steps", "latency_steps"),
    ):
        steps = e2e.get(key) or []
        if not steps:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            "| step | offered/s | decided/s | p50 ms | p95 ms | p99 ms | undecided | "
            "CPU % of a core (top 4; other = not ours; machine = all) | consumer lag | "
            "outbox backlog |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
        ]
        for st in steps:
            cpu = sorted(
                ((k, v) for k, v in st["cpu_percent"].items() if k not in ("machine", "other")),
                key=lambda kv: -kv[1],
            )[:4]
            cpu += [(k, st["cpu_percent"].get(k, 0.0)) for k in ("other", "machine")]
            lag = {k: v for k, v in st["consumer_lag_at_end_of_send"].items() if v}
            backlog = {k: v for k, v in st["outbox_backlog_at_end_of_send"].items() if v}
            lines.append(
                f"| {st['label']} | {_n(st['achieved_offer_per_s'])} | "
                f"{_n(st['decisions_per_s'])} | {_n(st['p50_ms'])} | {_n(st['p95_ms'])} | "
                f"{_n(st['p99_ms'])} | {st['undecided_after_drain']} | "
                + ", ".join(f"{k} {v:.0f}" for k, v in cpu)
                + f" | {_compact(lag)} | {_compact(backlog)} |"
            )
    hop_steps = [st for st in e2e.get("latency_steps") or [] if st.get("hops_ms")]
    if hop_steps:
        names = list(hop_steps[0]["hops_ms"])
        lines += [
            "",
            "## Where a confirmed order's time goes (ms, p50 / p99)",
            "",
            "From the outboxes' timestamps: a row's `created_at` is the start of the batch "
            "transaction that handled the input, `sent_at` when the relay had Kafka's acks.",
            "",
            "| step | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(names),
        ]
        for st in hop_steps:
            cells = [
                f"{_n(st['hops_ms'][n]['p50'])} / {_n(st['hops_ms'][n]['p99'])}" for n in names
            ]
            lines.append(f"| {st['label']} | " + " | ".join(cells) + " |")
    inv = e2e.get("invariants") or {}
    if inv:
        lines += ["", "## Invariants", "", "| check | result |", "| --- | --- |"]
        for name, res in inv.items():
            verdict = (
                "ok"
                if res.get("ok")
                else (
                    res.get("error")
                    or f"{res.get('violations')} violations: "
                    + "; ".join(res.get("examples", [])[:3])
                )
            )
            lines.append(f"| {name} | {verdict} |")
    prof = e2e.get("profile") or {}
    if prof.get("services"):
        lines += [
            "",
            f"## Profile (py-spy, {_n(prof.get('rate'))} orders/s offered for "
            f"{prof.get('seconds')} s)",
            "",
            "Share of the process's samples (py-spy skips idle threads, so busy % ≈ CPU % of a "
            "core); collapsed stacks in bench-results/profiles/.",
        ]
        for service, summary in prof["services"].items():
            lines += [
                "",
                f"### {service}: {summary['busy_percent']}% of a core busy",
                "",
                "| self % | function | | inclusive % | function |",
                "| ---: | --- | --- | ---: | --- |",
            ]
            for (own, own_pct), (inc, inc_pct) in zip(
                summary["self"][:15], summary["inclusive"][:15], strict=False
            ):
                lines.append(f"| {own_pct} | `{own}` | | {inc_pct} | `{inc}` |")
    path.write_text("\n".join(lines) + "\n")


def _compact(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items()) or "0"


def write_plot(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e2e = result.get("e2e", {})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    top = 1.0
    for key, label, style in (
        ("uniform_steps", "uniform", "o-"),
        ("hot_steps", "hot SKU", "s--"),
        ("latency_steps", "50%/80% steps", "^"),
    ):
        steps = e2e.get(key) or []
        if not steps:
            continue
        offered = [s["achieved_offer_per_s"] for s in steps]
        top = max(top, *offered)
        ax1.plot(offered, [s["decisions_per_s"] for s in steps], style, label=label)
        for pct, marker in (("p50_ms", "o"), ("p95_ms", "s"), ("p99_ms", "^")):
            values = [(o, s[pct]) for o, s in zip(offered, steps, strict=True) if s[pct]]
            if values:
                ax2.plot(
                    *zip(*values, strict=True),
                    marker=marker,
                    linestyle="-" if key == "uniform_steps" else "--",
                    label=f"{label} {pct[:3]}",
                )
    ax1.plot([0, top], [0, top], ":", color="grey", label="offered = decided")
    limit = _get(result, "summary", "layer_limits", "runtime_loop_batched")
    if limit:
        ax1.axhline(
            limit / 3, color="red", linestyle=":", linewidth=1, label="runtime loop ÷ 3 hops"
        )
    ax1.set_xlabel("offered orders/s")
    ax1.set_ylabel("orders/s reaching a decision")
    ax1.set_title("Throughput vs offered load")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("offered orders/s")
    ax2.set_ylabel("submission → order.confirmed (ms)")
    ax2.set_yscale("log")
    ax2.set_title("Latency vs offered load")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7, ncol=2)
    if not e2e.get("uniform_steps"):
        ax1.text(0.5, 0.5, "end to end did not run", ha="center", transform=ax1.transAxes)
    fig.suptitle(f"stockflow bench ({result['mode']}, {result['started_at']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
