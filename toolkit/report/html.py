"""reports/diagnosis.html: the diagnosis at a glance, in one self-contained file.

No network requests and no JavaScript: styles are inline, plots are PNGs embedded as data URIs,
tooltips are title attributes and the evidence folds with <details>. It opens offline, on a
cluster login node. Sections: changes since the baseline (when given), the recommendations,
the probe x mode matrix coloured by verdict, scaling plots per dependency, the evidence of every
failure (with its reproducer), the lock audit and remedies, and the fingerprint.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from threadprobe.report.compare import Comparison, gil_effects, gil_words, summary
from threadprobe.harness.proc import write_text_atomic
from threadprobe.diagnosis.races.parse import stack_text
from threadprobe.records import Corruption, Diagnosis, GilState, Kind, Mode, RaceStatus, Result, is_clean, is_failing, is_unavailable
from threadprobe.report import gil_mark, matrix, mode_label, racesource, remedy_summary, strength

COLOURS = {"safe": "#c8e6c9", "crash": "#ef9a9a", "corrupt": "#ce93d8", "hang": "#ffe082", "error": "#ffab91",
           "racy": "#ffcc80", "unavailable": "#e0e0e0"}

SHOWN_PAIRS = 12  # per cell with both stacks; the rest by name (a netCDF4 probe has hundreds)

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>threadprobe diagnosis {{ d.created }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #212121; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: 3px 7px; vertical-align: top; }
th { background: #f5f5f5; text-align: left; } td.cell { text-align: center; white-space: nowrap; }
small.races { white-space: normal; display: inline-block; max-width: 22em; } /* a race pass states its power at length */
pre { background: #fafafa; border: 1px solid #eee; padding: .6em; overflow-x: auto; max-height: 28em; font-size: 12px; }
.regression { background: #ffebee; border: 2px solid #c62828; padding: .6em 1em; }
.ok { background: #e8f5e9; border: 1px solid #2e7d32; padding: .6em 1em; }
.muted { color: #757575; } .legend span { padding: 2px 8px; margin-right: 4px; border: 1px solid #bbb; }
img.plot { max-width: 100%; border: 1px solid #eee; }
</style></head><body>
<h1>threadprobe diagnosis</h1>
<p><b>Interpreter diagnosed:</b> <code>{{ d.interpreter or fp.python.executable }}</code></p>
<p class="muted">{{ d.created }} &middot; threadprobe {{ d.threadprobe }} &middot; {{ '%.0f'|format(d.seconds) }} s &middot;
{{ fp.get('platform', '') }} &middot; Python {{ fp.python.version }} ({{ gil_words }})
&middot; {{ d.config.get('cores') }} cores</p>
{% if changes %}
<section id="changes"><h2>Changed since the baseline</h2>
<div class="{{ 'regression' if comparison.regressed else 'ok' }}">{% for line in changes %}{{ line }}<br>{% endfor %}</div></section>
{% endif %}
<section id="recommendation"><h2>Schedulers</h2>
<p class="muted">The probes decide which schedulers are safe; a run times those on its own input (the pilot) and picks the fastest.</p>
{% for name, rec in d.recommendations.items() %}
<p><b>{{ name }}</b>: without a pilot, <b>{{ rec.scheduler }}</b>, {{ rec.n_workers }} worker(s) &times; {{ rec.threads_per_worker }} thread(s)
{{ rec.held() }}</p>
<ul>{% for line in rec.rationale %}<li>{{ line }}</li>{% endfor %}</ul>
{% endfor %}</section>
<section id="matrix"><h2>Verdicts: probe &times; mode</h2>
<p class="legend">{% for v, c in colours.items() if v != 'safe' %}<span style="background:{{ c }}">{{ v }}</span>{% endfor %}
<span class="muted">cells: verdict, failing/total trials and, when clean, the 95% bound on the failure rate, speedup; the race pass below; hover for details</span></p>
<details class="legend"><summary>clean cells, by the strength of their evidence</summary>{{ evidence_legend|safe }}</details>
{% if race_source %}<p id="race-source" class="{{ 'muted' if race_source.reused else 'regression' }}">{{ race_source.describe() }}</p>{% endif %}
<table id="verdicts"><tr><th>probe</th><th>dependency</th>{% for m in modes %}<th>{{ m }}</th>{% endfor %}</tr>
{% for probe, row in matrix %}<tr><td>{{ probe }}</td><td>{{ row.dependency }}</td>
{% for m in modes %}{% set r = row.cells.get(m) %}{% if r %}
<td class="cell verdict-{{ r.verdict }}" style="{{ cell_css(r) }}" title="{{ tip(r) }}">
{% if r in failures %}<a href="#ev-{{ anchor(r) }}">{{ word(r) or r.verdict }}</a>{% else %}{{ word(r) or r.verdict }}{% endif %}
<br><small>{{ cell(r) }}</small>{% set races = race_text(r) %}{% if races %}<br><small class="races">{{ races }}</small>{% endif %}</td>{% else %}<td></td>{% endif %}{% endfor %}</tr>{% endfor %}
</table></section>
{% if gil_lines %}<section id="gil"><h2>Forcing the GIL off</h2>
<p class="muted">Each threads mode with the GIL forced off (PYTHON_GIL=0) against the same mode with the GIL as the imports left it: verdict, speedup, contention.</p>
<ul>{% for line in gil_lines %}<li>{{ line }}</li>{% endfor %}</ul></section>{% endif %}
<section id="scaling"><h2>Scaling: throughput against workers</h2>
<p class="muted">Throughput relative to serial (clean timing trials, median), threads and processes side by side, per dependency. Dashed: ideal on {{ d.config.get('cores') }} cores.</p>
{% for dep, png in plots %}<h3>{{ dep }}</h3><img class="plot" alt="scaling of {{ dep }}" src="data:image/png;base64,{{ png }}">{% endfor %}
</section>
<section id="evidence"><h2>Evidence</h2>
{% for r in failures %}<details id="ev-{{ anchor(r) }}"><summary><b>{{ r.probe }}</b> {{ mode_label(r) }}: {{ r.verdict }}
({{ r.trials - r.safety.outcomes.get('ok', 0) }} of {{ r.trials }} trials{% if r.races %}; {{ r.races.summary() }}{% endif %})
{% if r.probe in d.repro %} &middot; reproducer: <a href="{{ d.repro[r.probe] }}">{{ d.repro[r.probe] }}</a>{% endif %}</summary>
{% for e in r.safety.evidence %}<p><b>{{ e.kind }}</b>: {{ e.summary }}</p>
{% if e.traceback %}<pre>{{ e.traceback }}</pre>{% endif %}{% if e.native %}<p>native frames of the crashing thread (gdb):</p><pre>{{ e.native }}</pre>{% endif %}
{% if e.stacks %}<p>stacks ({{ e.stack_source }}):</p><pre>{{ e.stacks }}</pre>{% endif %}
{% if e.expected %}<p>i={{ e.index }}: expected digest {{ e.expected }}, got {{ e.actual }}</p>{% endif %}{% endfor %}
{% if r.races %}{% for p in r.races.pairs[:shown_pairs] %}<p class="race-pair"><b>race</b> in <code>{{ p.object }}</code>: <code>{{ p.functions|join(' ⇄ ') }}</code>
({{ p.count }} report(s)){% if p.operations %}, reached through {{ p.operations|join(', ') }}{% endif %}: {{ p.what }}</p>{% for st in p.stacks %}<pre>{{ stack_text(st) }}</pre>{% endfor %}{% endfor %}
{% if r.races.pairs|length > shown_pairs %}<details><summary>{{ r.races.pairs|length - shown_pairs }} more race pairs (all with stacks in diagnosis.json)</summary>
<ul>{% for p in r.races.pairs[shown_pairs:] %}<li><code>{{ p.key }}</code> &times;{{ p.count }}</li>{% endfor %}</ul></details>{% endif %}
{% if r.races.reason %}<p>race pass: {{ r.races.summary() }}</p>{% endif %}{% endif %}
</details>{% else %}<p>No failures.</p>{% endfor %}</section>
{% if d.lock_audit %}<section id="lock-audit"><h2>Lock coverage audit: Iris's netCDF lock</h2>
<table><tr><th>probe</th><th>netCDF4 calls in tasks</th><th>unlocked</th><th>in open() (once)</th><th>unlocked callers (top)</th></tr>
{% for a in d.lock_audit %}<tr><td>{{ a.probe }}</td><td>{{ a.calls }}</td><td>{{ a.unlocked }}</td><td>{{ a.open_calls if a.open_calls is not none else '' }} ({{ a.open_unlocked if a.open_unlocked is not none else '' }} unlocked)</td>
<td><small>{% for u in a.unlocked_by_caller[:8] %}{{ u.count }} &times; {{ u.operation }} at {{ u.caller }}<br>{% endfor %}</small></td></tr>{% endfor %}
</table></section>{% endif %}
{% if remedy_lines %}<section id="remedies"><h2>Remedies verified</h2><ul>{% for line in remedy_lines %}<li>{{ line }}</li>{% endfor %}</ul></section>{% endif %}
<section id="fingerprint"><h2>Fingerprint</h2>
<p>{{ fp.get('hdf5_copies', '?') }} HDF5 copies and {{ fp.get('netcdf_copies', '?') }} netCDF copies loaded in one process
(libraries are recognised by the symbols they define, whatever their file names).</p>
{% if fp.get('hdf5') %}<table><tr><th>HDF5 copy</th><th>version</th><th>thread-safe build</th><th>loaded by</th></tr>
{% for h in fp.hdf5 %}<tr><td>{{ h.path }}</td><td>{{ h.version }}</td><td>{{ h.threadsafe }}</td><td>{{ h.loaded_by }}</td></tr>{% endfor %}</table>{% endif %}
<table><tr><th>package</th><th>version</th></tr>{% for k, v in fp.packages.items() %}<tr><td>{{ k }}</td><td>{{ v or 'not installed' }}</td></tr>{% endfor %}</table>
{% if fp.get('libraries') %}<details><summary>{{ fp.libraries|length }} native libraries mapped</summary>
<table><tr><th>family</th><th>version</th><th>soname</th><th>loaded by</th><th>sha256</th><th>path</th></tr>
{% for l in fp.libraries %}<tr><td>{{ l.family }}</td><td>{{ l.version or '' }}</td><td>{{ l.soname or '' }}</td><td>{{ l.loaded_by }}</td><td><code>{{ l.sha256[:16] }}</code></td><td><small>{{ l.path }}</small></td></tr>{% endfor %}
</table></details>{% endif %}</section>
</body></html>
"""


def cell(r: Result) -> str:
    if is_unavailable(r.verdict):
        return ""
    failing = r.trials - r.safety.outcomes.get(Kind.OK, 0)
    if not r.trials:
        return "no stress trials"
    text = strength.trials_text(r) if is_clean(r.verdict) or not failing else f"{failing}/{r.trials}"
    if r.safety.corruption:
        text += " (message only)" if r.safety.corruption == Corruption.MESSAGE else " (data)"
    if r.speed.speedup is not None:
        text += f" x{r.speed.speedup:.2f}"
    return text + gil_mark(r)


def cell_css(r: Result) -> str:
    """A clean cell's green says how strong its evidence is (``strength``); others, their verdict."""
    return strength.css(r) or f"background:{COLOURS.get(r.verdict, '#fff')}"


def tip(r: Result) -> str:
    parts = [f"{r.trials} trials", ", ".join(f"{k} {n}" for k, n in r.safety.outcomes.items() if n),
             f"95% bound on the failure rate {r.safety.failure_rate_upper95:.1%} per trial"]
    if r.safety.operation_bound is not None:
        parts.append(f"{r.safety.operations} concurrent calls clean: {r.safety.operation_bound:.2%} per call if calls were independent")
    if r.speed.speedup is not None:
        parts.append(f"speedup x{r.speed.speedup:.2f}, efficiency {r.speed.efficiency:.2f}, {r.speed.scaling}")
    if r.contention.kind:
        parts.append(f"contention {r.contention.kind}")
    if r.gil_enabled is not None:
        parts.append(f"GIL {'on' if r.gil_enabled else 'off'} in the workers"
                     + (f" (turned on by {', '.join(r.gil_reenabled_by)})" if r.gil_reenabled_by and r.gil_enabled else ""))
    if r.safety.evidence:
        parts.append(r.safety.evidence[0].summary)
    if r.races is not None:
        parts.append(r.races.summary())
    return " | ".join(p for p in parts if p)


def anchor(r: Result) -> str:
    off = "-gil-off" if r.gil == GilState.OFF else ""
    return f"{r.probe}-{r.mode}-{r.workers}{off}".replace(".", "_")


def scaling_plots(results: list[Result], cores: int) -> list[tuple[str, str]]:
    """One PNG per dependency: relative throughput against workers, threads | processes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_dep: dict[str, dict[str, list[Result]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.remedy is None and (r.speed.speedup is not None or r.mode == Mode.SERIAL) and r.speed.throughput:
            by_dep[r.dependency][r.probe].append(r)
    out = []
    for dep, probes in sorted(by_dep.items()):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
        top = 1.0
        for ax, mode in zip(axes, ("threads", "processes")):
            for probe, rs in sorted(probes.items()):
                points = sorted([(1, 1.0)] + [(r.workers, r.speed.speedup) for r in rs if r.mode == mode and r.speed.speedup])
                if len(points) > 1:
                    xs, ys = zip(*points)
                    top = max(top, *ys)
                    ax.plot(xs, ys, marker="o", label=probe.split(".", 1)[-1])
            widest = max([r.workers for rs in probes.values() for r in rs if r.mode == mode] or [2])
            ticks = list(range(1, widest + 1))
            ax.plot(ticks, [min(x, cores) for x in ticks], linestyle="--", color="#9e9e9e", linewidth=1)
            ax.set_title(mode)
            ax.set_xlabel("workers")
            ax.set_xticks(ticks)
        axes[0].set_ylabel("throughput / serial")
        axes[0].set_ylim(0, max(top, cores) * 1.1)
        if any(ax.get_legend_handles_labels()[0] for ax in axes):  # a serial run alone plots no curve
            axes[1].legend(*_handles(axes), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        out.append((dep, base64.b64encode(buffer.getvalue()).decode()))
    return out


def _handles(axes: Any) -> tuple[list[Any], list[str]]:
    """Every probe's curve once, whichever panel drew it."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen)


def render(d: Diagnosis, comparison: Comparison | None = None) -> str:
    import jinja2

    modes, by_probe = matrix(d.results)
    rows = {probe: {"dependency": next(iter(cells.values())).dependency, "cells": cells}
            for probe, cells in by_probe.items()}
    failures = [r for r in d.results if is_failing(r.verdict) or (r.races is not None and r.races.status != RaceStatus.CLEAN)]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        d=d, fp=_Attr(d.fingerprint), modes=modes, matrix=sorted(rows.items()), colours=COLOURS,
        cell=cell, cell_css=cell_css, word=strength.word, race_text=strength.race_text,
        evidence_legend=strength.legend_html(), race_source=racesource.of(d), shown_pairs=SHOWN_PAIRS, stack_text=stack_text, tip=tip, anchor=anchor, mode_label=mode_label, failures=failures,
        plots=scaling_plots(list(d.results), int(d.config.get("cores") or 1)),
        comparison=comparison, changes=summary(comparison) if comparison else [],
        remedy_lines=remedy_summary(d.remedies), gil_words=gil_words(d), gil_lines=gil_effects(d.results),
    )


PAIR_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>threadprobe: two diagnoses side by side</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1600px; padding: 0 1em; color: #212121; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: 3px 7px; vertical-align: top; }
th { background: #f5f5f5; text-align: left; } td.cell { text-align: center; white-space: nowrap; font-size: 12px; }
td.fallback { font-style: italic; opacity: .75; } .regression { background: #ffebee; border: 2px solid #c62828; padding: .6em 1em; }
.ok { background: #e8f5e9; border: 1px solid #2e7d32; padding: .6em 1em; } .muted { color: #757575; }
</style></head><body>
<h1>threadprobe: two diagnoses side by side</h1>
<table><tr><th></th><th>old</th><th>new</th></tr>
<tr><th>interpreter</th><td><code>{{ old.interpreter }}</code></td><td><code>{{ new.interpreter }}</code></td></tr>
<tr><th>Python</th><td>{{ pyver(old) }}</td><td>{{ pyver(new) }}</td></tr>
<tr><th>GIL</th><td>{{ gil_words(old) }}</td><td>{{ gil_words(new) }}</td></tr>
<tr><th>made</th><td>{{ old.created }}</td><td>{{ new.created }}</td></tr></table>
<div class="{{ 'regression' if comparison.regressed else 'ok' }}">{% for line in changes %}{{ line }}<br>{% endfor %}</div>
<p class="muted">Each mode: the old cell, then the new one. A cell with the GIL forced off is set beside the old
diagnosis's cell with the GIL as imported when the old one never forced it off (in italics).</p>
<table id="pair"><tr><th rowspan="2">probe</th>{% for m in modes %}<th colspan="2">{{ m }}</th>{% endfor %}</tr>
<tr>{% for m in modes %}<th>old</th><th>new</th>{% endfor %}</tr>
{% for probe in probes %}<tr><td>{{ probe }}</td>{% for m in modes %}{% for r, fallback in pair(probe, m) %}
{% if r %}<td class="cell{{ ' fallback' if fallback else '' }}" style="{{ cell_css(r) }}" title="{{ tip(r) }}">{{ word(r) or r.verdict }}<br>{{ cell(r) }}{% if r.contention.kind %}<br>{{ r.contention.kind }}{% endif %}</td>
{% else %}<td></td>{% endif %}{% endfor %}{% endfor %}</tr>{% endfor %}
</table></body></html>
"""


def render_pair(old: Diagnosis, new: Diagnosis, comparison: Comparison) -> str:
    """Two diagnoses next to each other: their builds and GIL, what changed, and every cell of
    both, old beside new (a cell with the GIL forced off beside the old one's as-imported cell when
    the old diagnosis never forced it off, as ``compare`` matches them)."""
    import jinja2

    old_modes, old_rows = matrix(old.results)
    new_modes, new_rows = matrix(new.results)
    forced = any(r.gil == GilState.OFF for r in old.results)

    def pair(probe: str, label: str) -> list[tuple[Result | None, bool]]:
        was = old_rows.get(probe, {}).get(label)
        fallback = was is None and not forced and label.endswith(", GIL off")
        if fallback:
            was = old_rows.get(probe, {}).get(label.removesuffix(", GIL off"))
        return [(was, fallback), (new_rows.get(probe, {}).get(label), False)]

    def pyver(d: Diagnosis) -> str:
        return str((d.fingerprint.get("python") or {}).get("version", "?"))

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(PAIR_TEMPLATE).render(
        old=old, new=new, comparison=comparison, changes=summary(comparison), gil_words=gil_words, pyver=pyver,
        modes=list(dict.fromkeys(new_modes + old_modes)), probes=sorted(set(old_rows) | set(new_rows)),
        pair=pair, colours=COLOURS, cell=cell, cell_css=cell_css, word=strength.word, tip=tip)


def write_pair(old: Diagnosis, new: Diagnosis, comparison: Comparison, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, render_pair(old, new, comparison))
    return path


class _Attr(dict):
    """Dict access as attributes in the template (fp.python.version), recursively."""

    def __getattr__(self, name: str) -> Any:
        value = self[name]
        if isinstance(value, dict):
            return _Attr(value)
        if isinstance(value, list):
            return [_Attr(v) if isinstance(v, dict) else v for v in value]
        return value


def write(d: Diagnosis, out: Path, comparison: Comparison | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "diagnosis.html"
    write_text_atomic(path, render(d, comparison))
    return path
