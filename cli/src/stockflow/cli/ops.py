"""Operator commands: topics, dead letters and their replay, consumer lag, schemas, status."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.json import JSON as RichJSON
from rich.markup import escape
from rich.table import Table

from stockflow.cli import kafka_tools as kt
from stockflow.cli.common import CliError, JsonOption, plain, print_json, service_url, setting
from stockflow.contracts.base import TOPICS

SERVICES = ("catalog", "stock", "order", "fulfillment", "accounting")

topics_app = typer.Typer(no_args_is_help=True)
dlq_app = typer.Typer(no_args_is_help=True)
schemas_app = typer.Typer(no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the operator commands to the top-level app."""
    app.add_typer(topics_app, name="topics", help="Topics: offsets, compaction, decoded tail.")
    app.add_typer(dlq_app, name="dlq", help="Dead letters: list, show, replay (audited).")
    app.add_typer(schemas_app, name="schemas", help="The event contract as JSON Schema/AsyncAPI.")
    app.command("lag")(lag)
    app.command("status")(status)


def _bootstrap() -> str:
    return setting("KAFKA_BOOTSTRAP_SERVERS")


def _time(moment: Any) -> str:
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if hasattr(moment, "strftime") else moment


def _cut(text: str | None, width: int) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"


# --- topics ---------------------------------------------------------------------------------


@topics_app.command("list")
def topics_list(
    patterns: Annotated[
        list[str] | None, typer.Argument(help="Only topics matching these globs ('stock.*').")
    ] = None,
    internal: Annotated[bool, typer.Option(help="Include __consumer_offsets and co.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Topics with their partitions, end offsets, retained records and cleanup policy."""
    infos = kt.run_command(kt.topics(_bootstrap(), patterns or (), internal=internal))
    if as_json:
        print_json(
            [
                {
                    "topic": info.name,
                    "owner": known.owner if (known := TOPICS.get(info.name)) else None,
                    "partitions": info.partitions,
                    "records": info.records,
                    "end_offsets": info.end_offsets,
                    "cleanup_policy": info.cleanup_policy,
                }
                for info in infos
            ]
        )
        return
    table = Table("topic", "owner", "partitions", "records", "end offsets", "cleanup")
    for info in infos:
        ends = " ".join(f"{p}:{o}" for p, o in sorted(info.end_offsets.items()))
        known = TOPICS.get(info.name)
        table.add_row(
            plain(info.name),
            known.owner if known else "",
            str(info.partitions),
            str(info.records),
            _cut(ends, 60),
            "[bold]compact[/]" if "compact" in info.cleanup_policy else plain(info.cleanup_policy),
        )
    Console().print(table)


@topics_app.command("tail")
def topics_tail(  # noqa: PLR0913 -- typer: one parameter per command-line option
    topic: str,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Only this CloudEvents type (a glob; repeatable)."),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", "-k", help="Only this Kafka key.")] = None,
    order: Annotated[
        str | None,
        typer.Option("--order", help="Only records about this order (key, subject or data)."),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Read the whole topic, oldest first.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            help="How many records: the newest N (the oldest N with --from-beginning); "
            "with --follow, how far back to start.",
        ),
    ] = 20,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", "-f", help="Keep printing new records.")
    ] = False,
    look_back: Annotated[
        int,
        typer.Option(
            "--look-back",
            min=1,
            help="With --type/--key/--order: how many of each partition's newest records to "
            "search for the newest N matching ones.",
        ),
    ] = 10_000,
    as_json: JsonOption = False,
) -> None:
    """Decoded CloudEvents of a topic (binary or structured mode); bad records say why.

    Without --from-beginning it shows the newest N records that match the filters, searching
    the newest --look-back records of each partition (N when nothing is filtered).
    """
    console = Console()
    filters = {"types": types or (), "key": key, "order": order}
    filtered = bool(types or key or order)
    window = None if from_beginning else max(limit, look_back) if filtered else limit
    tail = _Tail(topic, filters, from_beginning, window, limit, follow, as_json)
    kt.run_command(_tail(console, tail))


@dataclass(frozen=True)
class _Tail:
    """What `topics tail` reads and how it prints it."""

    topic: str
    filters: dict[str, Any]
    from_beginning: bool
    window: int | None
    """Records read back from each partition's end (None: from its beginning)."""
    limit: int
    follow: bool
    as_json: bool

    def wanted(self, batch: list[Any]) -> list[kt.Shown]:
        return [s for s in map(kt.describe, batch) if s.matches(**self.filters)]

    def nothing_found(self) -> str:
        if self.window is None:
            return f"no matching records in {self.topic}"
        return (
            f"no matching records among the newest {self.window} of each partition of "
            f"{self.topic} (--look-back searches further back, --from-beginning all of it)"
        )


def _by_time(shown: list[kt.Shown]) -> list[kt.Shown]:
    return sorted(shown, key=lambda s: (s.timestamp is None, s.timestamp, s.partition, s.offset))


async def _tail(console: Console, tail: _Tail) -> None:
    window = tail.window
    if not tail.follow:
        shown: list[kt.Shown] = []
        async for batch in kt.scan(_bootstrap(), tail.topic, last=window):
            shown.extend(tail.wanted(batch))
            if tail.from_beginning and len(shown) >= tail.limit:
                break
        shown = _by_time(shown)
        shown = shown[: tail.limit] if tail.from_beginning else shown[-tail.limit :]
        _print_records(console, shown, tail.as_json, header=True)
        if not tail.as_json and not shown:
            console.print(f"[dim]{plain(tail.nothing_found())}[/]")
        return
    first = True
    async for batch in kt.scan(_bootstrap(), tail.topic, last=window, follow=True):
        shown = tail.wanted(batch)
        if shown:
            _print_records(console, _by_time(shown), tail.as_json, header=first)
            first = False


def _print_records(console: Console, shown: list[kt.Shown], as_json: bool, header: bool) -> None:
    if as_json:
        for record in shown:
            typer.echo(json.dumps(record.as_json(), ensure_ascii=False, default=str))
        return
    if not shown:
        return
    table = Table("p/offset", "time", "key", "type", "mode", "data", show_header=header)
    for record in shown:
        if record.error:
            data = f"[red]{escape(record.error)}[/] {escape(_cut(str(record.data or ''), 60))}"
        else:
            data = escape(_cut(json.dumps(record.data, separators=(",", ":")), 120))
        table.add_row(
            f"{record.partition}/{record.offset}",
            _time(record.timestamp),
            escape(record.key or ""),
            escape(record.type) if record.type else "[red]—[/]",
            record.mode if record.mode != "invalid" else "[red]invalid[/]",
            data,
        )
    console.print(table)


# --- dead letters ---------------------------------------------------------------------------

TopicOption = Annotated[
    str | None,
    typer.Option("--topic", help="Read this dead-letter topic instead of the service's."),
]
SourceOption = Annotated[
    str | None,
    typer.Option("--source-topic", help="Only dead letters that came from this topic."),
]


def _dlq(service: str, topic: str | None) -> str:
    try:
        return topic or kt.dlq_topic_of(service)
    except kt.OpsError as exc:
        raise typer.BadParameter(str(exc), param_hint="SERVICE") from exc


def _replay_note(history: list[kt.Replay]) -> str:
    if not history:
        return ""
    latest = history[-1]
    times = f" ({len(history)}×)" if len(history) > 1 else ""
    return f"{latest.replayed_at[:19]} by {latest.replayed_by}{times}"


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str, typer.Argument(help="catalog, stock, order(s), fulfillment, ...")],
    topic: TopicOption = None,
    source_topic: SourceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="The newest N per partition.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Dead letters: where each came from, why, and whether it was replayed."""
    name = _dlq(service, topic)

    async def load() -> tuple[list[kt.DeadLetter], dict[str, list[kt.Replay]]]:
        letters = await kt.dead_letters(_bootstrap(), name, last=limit, source_topic=source_topic)
        return letters, await kt.replays(_bootstrap())

    letters, history = kt.run_command(load())
    if as_json:
        for letter in letters:
            replays = [r.__dict__ for r in history.get(letter.position, [])]
            typer.echo(json.dumps({**letter.as_json(), "replays": replays}, ensure_ascii=False))
        return
    console = Console()
    table = Table(
        "offset", "failed at", "source", "group", "event type", "reason", "replayed", title=name
    )
    for letter in letters:
        replayed = _replay_note(history.get(letter.position, []))
        table.add_row(
            str(letter.offset) if letter.partition == 0 else f"{letter.partition}/{letter.offset}",
            letter.failed_at[:23],
            escape(letter.source),
            escape(letter.header("dlq_consumer_group") or ""),
            escape(letter.event_type or "?"),
            escape(_cut(letter.reason, 60)),
            f"[green]{escape(replayed)}[/]" if replayed else "",
        )
    console.print(table)
    pending = sum(1 for letter in letters if letter.position not in history)
    console.print(f"{len(letters)} dead letters, {pending} not replayed")


@dlq_app.command("show")
def dlq_show(
    service: Annotated[str, typer.Argument(help="catalog, stock, order(s), fulfillment, ...")],
    offset: Annotated[int, typer.Argument(min=0)],
    partition: Annotated[int, typer.Option(min=0)] = 0,
    topic: TopicOption = None,
    as_json: JsonOption = False,
) -> None:
    """One dead letter: every header and the original value (a hex dump when not UTF-8)."""
    name = _dlq(service, topic)

    async def load() -> tuple[kt.DeadLetter | None, list[kt.Replay]]:
        found = await kt.dead_letters_at(_bootstrap(), name, [(partition, offset)])
        letter = found.get((partition, offset))
        history = await kt.replays(_bootstrap()) if letter else {}
        return letter, history.get(letter.position, []) if letter else []

    letter, history = kt.run_command(load())
    if letter is None:
        raise CliError(f"no record at {name}/{partition}/{offset}")
    if as_json:
        replays = [replay.__dict__ for replay in history]
        print_json({**letter.as_json(), "replays": replays})
        return
    console = Console()
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in (
        ("position", letter.position),
        ("written", _time(letter.timestamp)),
        ("key", kt.text_or_hex(letter.key) or "(none)"),
        ("source", letter.source),
        ("event", f"{letter.event_type or '?'} {letter.event_id or ''}"),
        ("reason", letter.reason),
    ):
        summary.add_row(label, escape(value))
    console.print(summary)
    headers = Table("header", "value", title="headers")
    for header, raw in letter.headers:
        style = "cyan" if header.startswith("dlq_") else ""
        headers.add_row(escape(header), escape(kt.text_or_hex(raw) or ""), style=style)
    console.print(headers)
    for replay in history:
        forced = " (forced)" if replay.forced else ""
        note = f" — {replay.note}" if replay.note else ""
        console.print(
            f"[green]replayed[/] {replay.replayed_at} by {escape(replay.replayed_by)} → "
            f"{replay.target}{forced}{escape(note)}"
        )
    console.rule(f"value ({len(letter.value)} bytes)")
    try:
        text = letter.value.decode()
    except UnicodeDecodeError:
        console.print(kt.hexdump(letter.value), markup=False, highlight=False)
        return
    try:
        console.print(RichJSON(text))
    except (json.JSONDecodeError, ValueError):
        console.print(text, markup=False, highlight=False)


@dlq_app.command("replay")
def dlq_replay(  # noqa: PLR0913 -- typer: one parameter per command-line option
    service: Annotated[str, typer.Argument(help="catalog, stock, order(s), fulfillment, ...")],
    offsets: Annotated[
        list[int] | None, typer.Option("--offset", min=0, help="Replay this offset (repeatable).")
    ] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Replay every dead letter not replayed yet.")
    ] = False,
    partition: Annotated[int, typer.Option(min=0, help="Partition of --offset.")] = 0,
    topic: TopicOption = None,
    source_topic: SourceOption = None,
    force: Annotated[bool, typer.Option(help="Replay even what was replayed before.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    note: Annotated[str | None, typer.Option(help="Why: kept in the audit record.")] = None,
) -> None:
    """Re-publish dead letters to their source topic, byte for byte, and record it in ops.audit.v1.

    The dlq_* headers are dropped and `stockflow_replayed_from: <dlq topic>/<partition>/<offset>`
    is added. A dead letter that was replayed before is refused unless --force.
    """
    if bool(offsets) == replay_all:
        raise typer.BadParameter("give --offset N (repeatable) or --all", param_hint="--offset")
    name = _dlq(service, topic)
    console = Console()
    bootstrap = _bootstrap()

    async def load() -> tuple[list[kt.DeadLetter], dict[str, list[kt.Replay]]]:
        if replay_all:
            letters = await kt.dead_letters(bootstrap, name, source_topic=source_topic)
        else:
            wanted = [(partition, offset) for offset in offsets or ()]
            found = await kt.dead_letters_at(bootstrap, name, wanted)
            missing = [f"{name}/{p}/{o}" for p, o in wanted if (p, o) not in found]
            if missing:
                raise kt.OpsError(f"no dead letter at {', '.join(missing)}")
            letters = [found[position] for position in sorted(set(wanted))]
        return letters, await kt.replays(bootstrap)

    letters, history = kt.run_command(load())
    refused = [] if force else [letter for letter in letters if letter.position in history]
    skipped = {letter.position for letter in refused}
    chosen = [letter for letter in letters if letter.position not in skipped]
    for letter in refused:
        console.print(
            f"[yellow]refused[/] {letter.position}: already replayed "
            f"{escape(_replay_note(history[letter.position]))} (use --force to replay again)"
        )
    failed = bool(refused) and not replay_all
    if not chosen:
        console.print("nothing to replay")
        raise typer.Exit(1 if failed else 0)

    table = Table("offset", "to", "key", "event type", "reason", title=f"replay from {name}")
    for letter in chosen:
        table.add_row(
            f"{letter.partition}/{letter.offset}",
            escape(letter.source_topic) if letter.source_topic else "[red]unknown[/]",
            escape(kt.text_or_hex(letter.key) or ""),
            escape(letter.event_type or "?"),
            escape(_cut(letter.reason, 50)),
        )
    console.print(table)
    if not yes:
        typer.confirm(f"Replay {len(chosen)} record(s)?", abort=True)
    who = os.environ.get("STOCKFLOW_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}"
    request = kt.ReplayRequest(who, note=note, forced=force)
    done = kt.run_command(kt.replay(bootstrap, chosen, request))
    for replay in done:
        console.print(f"[green]replayed[/] {replay.position} → {replay.target}")
    console.print(f"{len(done)} replayed by {escape(who)}, recorded in {kt.AUDIT_TOPIC}")
    raise typer.Exit(1 if failed else 0)


# --- consumer lag ---------------------------------------------------------------------------


def lag(
    groups: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="Only this group (repeatable).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Consumer lag per group and partition: committed offsets against end offsets."""
    lags = kt.run_command(kt.consumer_lag(_bootstrap(), groups or ()))
    if as_json:
        for rows in lags.values():
            for row in rows:
                typer.echo(json.dumps({**row.__dict__, "lag": row.lag}))
        return
    console = Console()
    if not lags:
        console.print("no consumer groups")
        return
    table = Table("group", "topic", "partition", "committed", "end", "lag")
    for group, rows in sorted(lags.items()):
        if not rows:
            table.add_row(escape(group), "[dim]no committed offsets[/]", "", "", "", "")
            continue
        for row in rows:
            table.add_row(
                escape(group),
                escape(row.topic),
                str(row.partition),
                str(row.committed),
                str(row.end),
                f"[red]{row.lag}[/]" if row.lag else "0",
            )
        total = sum(row.lag for row in rows)
        table.add_row(
            f"[bold]{escape(group)}[/]",
            "[bold]total[/]",
            "",
            "",
            "",
            f"[bold]{total}[/]",
            end_section=True,
        )
    console.print(table)


# --- schemas --------------------------------------------------------------------------------


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(file_okay=False, help="Where to write them.")],
) -> None:
    """Write one JSON Schema per event type and the AsyncAPI document into DIRECTORY."""
    from stockflow.contracts.export import export_schemas

    written = export_schemas(directory)
    Console().print(f"wrote {len(written)} files to {directory}")


# --- status ---------------------------------------------------------------------------------


def status(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 3.0,
    as_json: JsonOption = False,
) -> None:
    """Each service's readiness (/readyz: database and Kafka reachable)."""
    results = asyncio.run(_readiness(timeout_s=timeout))
    if as_json:
        fields = ("service", "url", "state", "detail")
        print_json([dict(zip(fields, result, strict=True)) for result in results])
        raise typer.Exit(0 if all(r[2] == "ready" for r in results) else 1)
    table = Table("service", "url", "state", "detail")
    for service, url, state, detail in results:
        colour = "green" if state == "ready" else "red"
        table.add_row(service, url, f"[{colour}]{state}[/]", escape(_cut(detail, 80)))
    Console().print(table)
    raise typer.Exit(0 if all(r[2] == "ready" for r in results) else 1)


async def _readiness(*, timeout_s: float) -> list[tuple[str, str, str, str]]:
    async with httpx.AsyncClient(timeout=timeout_s) as client:

        async def probe(service: str) -> tuple[str, str, str, str]:
            url = service_url(service)
            try:
                response = await client.get(url + "/readyz")
            except httpx.HTTPError as exc:
                return service, url, "down", f"{type(exc).__name__}: {exc}"
            try:
                checks = response.json().get("checks", {})
                detail = ", ".join(f"{k}: {v}" for k, v in checks.items())
            except (ValueError, AttributeError):
                detail = response.text
            state = (
                "ready" if response.status_code == 200 else f"not ready ({response.status_code})"
            )
            return service, url, state, detail

        return list(await asyncio.gather(*(probe(s) for s in SERVICES)))
