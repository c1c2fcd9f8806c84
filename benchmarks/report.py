"""Turn the raw worker results into the printed report: machine facts, the speed table, the memory table."""

from __future__ import annotations

from harness import fmt_bytes, median, spread
from specs import ORDER, SPECS, TARGETS, digits_spec

SPREAD_WARN = 0.15  # interquartile range over median above which a row is flagged as noisy
MEM_TARGET = 1.5


def _gather(blocks: list[dict], name: str):
    """All repeat times (s) of ``name`` across blocks, or the first reason it did not run."""
    times, why, note = [], None, ""
    for blk in blocks:
        r = blk.get("results", {}).get(name) if "results" in blk else None
        if r is None:
            why = why or blk.get("error", "no result")
        elif "times" in r:
            times += r["times"]
            note = r.get("note", note)
        else:
            why = why or r.get("unavailable") or r.get("error")
    return times, why, note


def _first(blocks, key):
    for b in blocks:
        if key in b:
            return b[key]
    return None


def _header(res: dict) -> list[str]:
    f, t = res["facts"], res["timing"]
    vn, vt = _first(t["nncli"], "versions") or {}, _first(t["torch"], "versions") or {}
    lines = [
        f"date        {f['date']}",
        f"command     {f['command']}",
        f"machine     {f['cpu']}, {f['cores']} logical cores, load average before "
        f"{f['loadavg_before'][0]:.2f}",
        f"versions    python {vn.get('python', '?')}, numpy {vn.get('numpy', '?')}, "
        f"nncli {vn.get('nncli', '?')}, torch {vt.get('torch', '?')}",
        f"threads     numpy BLAS {f['threads']}; torch.set_num_threads({f['threads']}) → "
        f"{vt.get('torch_threads', '?')}",
        "OpenBLAS env "
        + ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in f["openblas_env"].items())
        + ("; unset in the workers (--unset-openblas-env)" if f["unset_openblas_env"] else ""),
    ]
    for lib in ("nncli", "torch"):
        # every distinct pool seen in any block (a library loaded in one block only still shows)
        seen = {}
        for blk in t[lib]:
            for p in blk.get("pools", []):
                seen.setdefault((p.get("filepath"), p.get("num_threads")), p)
        blas_libs = {k[0] for k, p in seen.items() if p.get("user_api") == "blas"}
        if lib == "nncli" and len(blas_libs) > 1:
            lines.append(
                f"WARNING: the nncli worker loaded {len(blas_libs)} BLAS libraries, each with "
                f"its own thread pool (nncli should use numpy's only)"
            )
        for p in seen.values():
            lines.append(
                f"{lib:5} pool  {p['user_api']}: {p['internal_api']} {p['version']}, "
                f"{p['num_threads']} threads, arch {p.get('architecture')}, "
                f"{(p.get('filepath') or '').rsplit('/', 2)[-2:][0]}/"
                f"{(p.get('filepath') or '').rsplit('/', 1)[-1]}"
            )
    if vn.get("torch_imported"):
        lines.append("WARNING: the nncli worker imported torch")
    if f["loadavg_before"][0] > 0.5:
        lines.append(
            f"WARNING: the machine was loaded before starting (load average "
            f"{f['loadavg_before'][0]:.2f} > 0.5); timings may be slow and noisy"
        )
    return lines


def _speed_rows(res: dict) -> tuple[list[str], list[str]]:
    t, rows, notes = res["timing"], [], []
    head = (
        f"{'workload':12} {'nncli ms':>9} {'torch ms':>9} {'ratio':>6} {'target':>7} {'met':>4} "
        f"{'spread n/t':>11}  what"
    )
    rows.append(head)
    rows.append("-" * len(head) + "-" * 30)
    for name in [n for n in ORDER if n in res["names"]]:
        tn, why_n, note = _gather(t["nncli"], name)
        tt, why_t, _ = _gather(t["torch"], name)
        what = note or (digits_spec() if name == "digits_cnn" else SPECS[name]).get("note", "")
        if not tn or not tt:
            rows.append(
                f"{name:12} {'—':>9} {'—':>9} {'—':>6} {'≤' + str(TARGETS[name]):>7} {'—':>4} "
                f"{'':>11}  not run: {why_n or why_t}"
            )
            continue
        rows.append(_row(name, median(tn), median(tt), TARGETS[name], spread(tn), spread(tt), what, 1e3))
        if max(spread(tn), spread(tt)) > SPREAD_WARN:
            notes.append(
                f"WARNING: {name}: high run-to-run spread "
                f"({spread(tn):.0%} nncli, {spread(tt):.0%} torch); treat the ratio with care"
            )
    if "e2e" in res["names"]:
        rows.append(_e2e_row(res, notes))
    return rows, notes


def _row(name, a, b, target, sa, sb, what, scale):
    ratio = a / b
    met = "yes" if ratio <= target else "no"
    return (
        f"{name:12} {a * scale:9.3f} {b * scale:9.3f} {ratio:6.2f} {'≤' + str(target):>7} {met:>4} "
        f"{f'{sa:.0%}/{sb:.0%}':>11}  {what}"
    )


def _e2e_row(res, notes) -> str:
    runs_n = [r for r in res["e2e"]["nncli"] if "seconds" in r]
    runs_t = [r for r in res["e2e"]["torch"] if "seconds" in r]
    steps = res["e2e_steps"]
    if not runs_n or not runs_t:
        bad = [r for r in res["e2e"]["nncli"] + res["e2e"]["torch"] if "seconds" not in r]
        why = (bad[0].get("unavailable") or bad[0].get("error")) if bad else "not run"
        return f"{'e2e':12} {'—':>9} {'—':>9} {'—':>6} {'≤1.0':>7} {'—':>4} {'':>11}  not run: {why}"
    sn, st = [r["seconds"] for r in runs_n], [r["seconds"] for r in runs_t]
    wall = median([r["process_wall"] for r in runs_n])
    acc = median([r.get("val_acc", float("nan")) for r in runs_t])
    what = (
        f"nncli train mnist1d_cnn --threads {res['facts'].get('e2e_threads', '?')}, {steps} steps, "
        f"ms/step (whole process {wall:.2f} s); torch val acc {acc:.2f}"
    )
    return _row(
        "e2e", median(sn) / steps, median(st) / steps, TARGETS["e2e"], spread(sn), spread(st), what, 1e3
    )


def _memory_rows(res: dict) -> list[str]:
    mem = res["memory"]
    if not mem["nncli"]:
        return []
    head = (
        f"{'workload':12} {'nncli ΔRSS':>11} {'torch ΔRSS':>11} {'nncli traced':>13} "
        f"{'theory':>10} {'traced/theory':>14} {'target':>7}  theory = params + grads + optimiser + saved"
    )
    rows = [head, "-" * len(head)]
    for name in [n for n in ORDER if n in mem["nncli"]]:
        mn, mt = mem["nncli"][name], mem["torch"].get(name, {})
        if "rss_peak" not in mn:
            rows.append(f"{name:12} not run: {mn.get('unavailable') or mn.get('error')}")
            continue
        is_train = SPECS.get(name, {}).get("kind") == "train" or name == "digits_cnn"
        # the ≤ 1.5× figure is about training; a bare fwd+bwd also holds its input, upstream gradient
        # and output, which the theory does not count, so no ratio is shown for those rows
        th = mn.get("theory") if is_train else None
        total = sum(th.values()) if th else None
        ratio = mn["traced_peak"] / total if total else None
        detail = (" + ".join(fmt_bytes(v) for v in th.values())) if th else ""
        rows.append(
            f"{name:12} {fmt_bytes(mn['rss_peak']):>11} {fmt_bytes(mt.get('rss_peak')):>11} "
            f"{fmt_bytes(mn['traced_peak']):>13} {fmt_bytes(total):>10} "
            f"{(f'{ratio:.2f}' if ratio else '—'):>14} "
            f"{('≤' + str(MEM_TARGET)) if is_train else '':>7}  {detail}"
        )
    return rows


def print_report(res: dict) -> None:
    speed, notes = _speed_rows(res)
    out = _header(res) + [""] + speed + [""] + _memory_rows(res)
    out += [""] + notes if notes else []
    print("\n".join(out))
