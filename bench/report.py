"""Results: the machine, rich tables on the terminal, JSON files, Markdown for BENCHMARKS.md."""

import os
import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _first_line(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unavailable"
    return (
        (completed.stdout or completed.stderr).strip().splitlines()[0]
        if (completed.stdout or completed.stderr)
        else ""
    )


def machine() -> dict[str, Any]:
    cpu_model = "unknown"
    memory_gib = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    repository = Path(__file__).resolve().parents[1]
    commit = _first_line(["git", "-C", str(repository), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(
        ["git", "-C", str(repository), "status", "--porcelain", "--", "graph", "db"]
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(memory_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": _first_line(["wrk", "--version"]).split(" [")[0],
        "commit": commit + (" (graph/ or db/ modified)" if dirty else ""),
    }


def _number(value: float | None, unit: str) -> str:
    """A figure with its unit; — for none (a row without a floor)."""
    if value is None:
        return "—"
    if unit in ("req/s", "events/s"):
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _peaks(peaks: dict[str, float]) -> str:
    return " / ".join(f"{value:.0f}" for value in peaks.values()) if peaks else ""


def _peak_names(peaks: dict[str, float]) -> str:
    return " / ".join(peaks) if peaks else ""


def _notes(data: dict[str, Any]) -> list[str]:
    """The sentences under each database's tables: ingest, memory, ceilings, concurrency."""
    notes = []
    ingest = next((row for row in data["rows"] if row["scenario"].startswith("ingest (")), None)
    if ingest:
        d = ingest["details"]
        notes.append(
            f"Ingest: {d['service_events_per_second']:,.0f} events/s over HTTP, one client "
            f"(floor {d['floor_events_per_second']:,.0f}); the floor is the driver "
            f"{d['driver_ms_median']:.2f} ms + graphql-core {d['graphql_core_ms_median']:.2f} ms "
            f"per batch; service p90 {d['service_ms_p90']:.1f} ms."
        )
    close = next(
        (row for row in data["rows"] if row["scenario"].startswith("backfill close")), None
    )
    if close:
        d = close["details"]
        history, replacement = d["history_ingest"], d["replacement_ingest"]
        notes.append(
            f"Backfill close: {d['events']:,} events of history loaded through a first backfill "
            f"({history['seconds']:.1f} s of ingest, {history['ms_per_batch_median']:.0f} ms per "
            f"batch; its close {d['history_close_seconds']:.2f} s), then {d['events']:,} "
            f"replacing them ({replacement['seconds']:.1f} s); eventsToDeprecate "
            f"{d['events_to_deprecate']:,} ({d['events_to_deprecate_seconds']:.2f} s). meterUsage "
            f"right after the close: {d['usage_total']} over {d['usage_event_count']:,} events "
            f"(sent: {d['usage_expected_total']} over {d['usage_expected_event_count']:,}), "
            f"{'exact' if close['passed'] else 'NOT EXACT'}, whole and grouped by day and model."
        )
    if data.get("usage"):
        checked = "; ".join(
            f"{line['query']} {line['checks']['main']['total']} "
            f"({line['checks']['main']['event_count']:,} events) and "
            f"{line['checks']['small']['total']} ({line['checks']['small']['event_count']:,})"
            for line in data["usage"]
        )
        samples = ", ".join(
            f"{line['main_requests']}/{line['small_requests']}/{line['raw_runs']}"
            for line in data["usage"]
        )
        notes.append(
            "Usage and volume: every answer, on both businesses, equals the bare driver's "
            "aggregate (total as an exact decimal, event count, every non-empty bucket) before "
            f"it is timed: {checked}. Requests behind each p50 (main / small / raw aggregate, "
            f"one connection): {samples}."
        )
    soak = data["soak"]
    notes.append(
        f"Memory under sustained ingest of {soak['events']:,} events "
        f"({soak['events_per_second']:,.0f} events/s, one client): service RSS "
        f"{soak['rss_before_mib']:.0f} MiB before, {soak['rss_at_10_percent_mib']:.0f} at 10 %, "
        f"{soak['rss_at_50_percent_mib']:.0f} at 50 %, {soak['rss_after_mib']:.0f} after, "
        f"peak {soak['rss_peak_mib']:.0f}: {soak['growth_after_warmup']:+.1%} after warm-up "
        f"({'flat' if soak['flat'] else 'GROWS'}, ≤ +10 % counts as flat). Batch median "
        f"{soak['batch_ms_first_10_median']:.0f} ms over the first 10 batches, "
        f"{soak['batch_ms_last_10_median']:.0f} ms over the last 10."
    )
    ceiling = data["ceiling"]
    sink = ceiling["ingest_client_sink"]
    rates = ", ".join(
        f"{value:,.0f} {name.replace('_', ' ')}"
        for name, value in sink.items()
        if name.startswith("batches")
    )
    notes.append(
        "Load generator ceiling: wrk GET /healthz with 16 connections "
        f"{ceiling['wrk_healthz_floor']['requests_per_second']:,.0f} req/s (floor server), "
        f"{ceiling['wrk_healthz_service']['requests_per_second']:,.0f} req/s (service); "
        f"1 connection {ceiling['wrk_healthz_floor_1_connection']['p50_ms']:.3f} ms p50. "
        f"Ingest client against a no-op /sink: {sink['ms_per_batch_median']:.1f} ms per "
        f"1000-event batch, {rates}."
    )
    if data.get("concurrency"):
        c = data["concurrency"]["checks"]["concurrent"]
        notes.append(
            f"Concurrency check: {c['rows']:,} rows, {c['distinct_event_ids']:,} distinct eventIds "
            f"(expected {c['expected_distinct']:,}), {c['revisions']:,} revisions; responses "
            f"reported {c['reported_ingested']:,} ingested + {c['reported_duplicates']:,} "
            f"duplicates, {c['listed_more_than_once']} eventIds listed as ingested twice, "
            f"{c['failed_batches']} failed batches: "
            f"{'exactly once' if c['exactly_once'] else 'NOT EXACTLY ONCE'}."
        )
    notes += [f"Warning: {warning}" for warning in data["warnings"]]
    return notes


def print_results(console: Console, results: dict[str, Any]) -> None:
    for kind, data in results["databases"].items():
        if "error" in data:
            console.print(f"[red]{kind}: failed: {data['error']}[/red]")
            continue
        title = f"{kind}: {data['seed']['events']:,} events ({results['mode']})"
        table = Table(title=title)
        for column in ("scenario", "figure", "floor", "ratio", "target", "", "peak RSS MiB"):
            right = column in ("figure", "floor", "ratio")
            table.add_column(column, justify="right" if right else "left")
        for row in data["rows"]:
            table.add_row(
                row["scenario"],
                f"{_number(row['figure'], row['unit'])}\n[dim]{row['figure_label']}[/dim]",
                "—"
                if row["floor"] is None
                else f"{_number(row['floor'], row['unit'])}\n[dim]{row['floor_label']}[/dim]",
                _ratio(row["ratio"]),
                row["target"],
                "—"
                if row["passed"] is None
                else "[green]pass[/green]"
                if row["passed"]
                else "[red]MISS[/red]",
                f"{_peaks(row['peak_rss_mib'])}\n[dim]{_peak_names(row['peak_rss_mib'])}[/dim]",
            )
        console.print(table)

        scale = Table(title=f"{kind}: scale check, list p50 through GraphQL (ms)")
        for column in ("filter", "small business", "main business", "ratio", "flat (≤ 1.5×)"):
            scale.add_column(column)
        for line in data["scale"]:
            scale.add_row(
                line["filter"],
                f"{line['small_p50_ms']:.2f} ({line['small_events']:,} events)",
                f"{line['main_p50_ms']:.2f} ({line['main_events']:,} events)",
                f"{line['ratio']:.2f}×",
                "[green]yes[/green]" if line["flat"] else "[red]no[/red]",
            )
        console.print(scale)
        for note in _notes(data):
            console.print(f"{kind}: {note}", highlight=False)
    console.print(f"total: {results['seconds']:.0f} s")


def markdown(results: dict[str, Any]) -> str:
    """The 'latest results' part of BENCHMARKS.md, from a results JSON."""
    m = results["machine"]
    out = [
        f"`{results['command']}` ({results['mode']}: {results['config']['events']:,} events), "
        f"{results['started']}, commit {m['commit']}: {results['seconds'] / 60:.1f} minutes.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m.get('postgresql', 'n/a')}, {m['wrk']}.",
        "",
    ]
    for kind, data in results["databases"].items():
        if "error" in data:
            out += [f"### {kind}", "", f"Failed: `{data['error']}`", ""]
            continue
        seed = data["seed"]
        out += [
            f"### {kind}: {seed['events']:,} events",
            "",
            f"Seeded in {seed['seconds']:.0f} s"
            + (
                f" (rollups rebuilt in {seed['rollup_rebuild_seconds']:.0f} s)"
                if "rollup_rebuild_seconds" in seed
                else ""
            )
            + f"; scenarios took {data['seconds']:.0f} s.",
            "",
            "| scenario | figure | floor | ratio | target | met | peak RSS MiB |",
            "|---|---:|---:|---:|---|---|---|",
        ]
        for row in data["rows"]:
            peaks = ", ".join(f"{name} {value:.0f}" for name, value in row["peak_rss_mib"].items())
            figure = f"{_number(row['figure'], row['unit'])} ({row['figure_label']})"
            floor = (
                "—"
                if row["floor"] is None
                else f"{_number(row['floor'], row['unit'])} ({row['floor_label']})"
            )
            met = "—" if row["passed"] is None else "yes" if row["passed"] else "**no**"
            out.append(
                f"| {row['scenario']} | {figure} | {floor} | {_ratio(row['ratio'])} "
                f"| {row['target']} | {met} | {peaks} |"
            )
        out += [
            "",
            "Scale check, list p50 through GraphQL (ms):",
            "",
            "| filter | small business | main business | ratio | flat (≤ 1.5×) |",
            "|---|---:|---:|---:|---|",
        ]
        for line in data["scale"]:
            out.append(
                f"| {line['filter']} | {line['small_p50_ms']:.2f} ({line['small_events']:,}) "
                f"| {line['main_p50_ms']:.2f} ({line['main_events']:,}) | {line['ratio']:.2f}× "
                f"| {'yes' if line['flat'] else '**no**'} |"
            )
        out.append("")
        for note in _notes(data):
            out += [note, ""]
    return "\n".join(out)
