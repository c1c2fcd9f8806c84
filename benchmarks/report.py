"""Turn the raw worker results into the printed report: machine facts, the speed table (nncli,
PyTorch, JAX), the roofline (FLOPs per step and GFLOP/s against the measured SGEMM peak) and the
memory table."""

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
    vj = _first(t.get("jax", []), "versions") or {}
    lines = [
        f"date        {f['date']}",
        f"command     {f['command']}",
        f"machine     {f['cpu']}, {f['cores']} logical cores, load average before "
        f"{f['loadavg_before'][0]:.2f}",
        f"versions    python {vn.get('python', '?')}, numpy {vn.get('numpy', '?')}, "
        f"nncli {vn.get('nncli', '?')}, torch {vt.get('torch', '?')}, jax {vj.get('jax', '—')}",
        f"threads     numpy BLAS {f['threads']}; torch.set_num_threads({f['threads']}) → "
        f"{vt.get('torch_threads', '?')}",
        f"jax threads {'1 (the worker pinned to one core)' if vj.get('xla_flags') else 'XLA default (one per core)'}"
        if vj
        else "jax         not run" + (f": {f['missing']['jax']}" if "jax" in f.get("missing", {}) else ""),
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
                + (f"idle spin 2^{p['spin']} cycles, " if "spin" in p else "")
                + f"{(p.get('filepath') or '').rsplit('/', 2)[-2:][0]}/"
                f"{(p.get('filepath') or '').rsplit('/', 1)[-1]}"
            )
    if vn.get("torch_imported"):
        lines.append("WARNING: the nncli worker imported torch")
    if "loadavg_after" in f:
        la, lb = f["loadavg_after"], f["loadavg_before"]
        lines.append(
            f"load        before {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}, after {la[0]:.2f} {la[1]:.2f} "
            f"{la[2]:.2f} (1, 5, 15 min averages)"
        )
    if "sgemm_peak_gflops" in f:
        lines.append(
            "SGEMM peak  "
            + ", ".join(
                f"{k} thread{'s' if k != '1' else ''} {v:.1f}" for k, v in f["sgemm_peak_gflops"].items()
            )
            + " GFLOP/s (numpy float32 1024² products, the best of 7, start and end of the run)"
        )
    pr = f.get("probes")
    if pr:
        trip = pr.get("pool_round_trip_us")
        lines.append(
            f"probes      caches {pr['caches']}; skinny SGEMM (32×145 @ 145×12544, 1 thr.) "
            f"{pr['skinny_gflops']:.0f} GFLOP/s; 8 MB copy {pr['copy_gbps']:.1f} GB/s; first touch "
            f"{pr['first_touch_us']:.2f} µs per 4 kB page; thread pool round trip "
            + (f"{trip:.0f} µs" if trip is not None else "—")
        )
    if f["loadavg_before"][0] > 0.5:
        lines.append(
            f"WARNING: the machine was loaded before starting (load average "
            f"{f['loadavg_before'][0]:.2f} > 0.5); timings may be slow and noisy"
        )
    return lines


def _speed_rows(res: dict) -> tuple[list[str], list[str]]:
    t, rows, notes = res["timing"], [], []
    head = (
        f"{'workload':14} {'nncli ms':>9} {'torch ms':>9} {'jax ms':>9} {'n/torch':>7} {'target':>7} "
        f"{'met':>4} {'n/jax':>6} {'spread n/t/j':>13}  what"
    )
    rows.append(head)
    rows.append("-" * len(head) + "-" * 30)
    for name in [n for n in ORDER if n in res["names"]]:
        tn, why_n, note = _gather(t["nncli"], name)
        tt, why_t, _ = _gather(t["torch"], name)
        tj, _, _ = _gather(t.get("jax", []), name)
        what = note or (digits_spec() if name == "digits_cnn" else SPECS[name]).get("note", "")
        if tn and not tt:  # PyTorch not run (--libs) or failed: nncli's time alone
            rows.append(
                f"{name:14} {median(tn) * 1e3:9.3f} {'—':>9} "
                + (f"{median(tj) * 1e3:9.3f}" if tj else f"{'—':>9}")
                + f" {'—':>7} {'≤' + str(TARGETS[name]):>7} {'—':>4} "
                + (f"{median(tn) / median(tj):6.2f}" if tj else f"{'—':>6}")
                + f" {'':>13}  torch not run: {why_t or 'not requested (--libs)'}"
            )
            continue
        if not tn or not tt:
            rows.append(
                f"{name:14} {'—':>9} {'—':>9} {'—':>9} {'—':>7} {'≤' + str(TARGETS[name]):>7} {'—':>4} "
                f"{'—':>6} {'':>13}  not run: {why_n or why_t}"
            )
            continue
        rows.append(_row(name, tn, tt, tj, TARGETS[name], what, 1e3))
        spreads = [spread(x) for x in (tn, tt, tj) if x]
        if max(spreads) > SPREAD_WARN:
            notes.append(
                f"WARNING: {name}: high run-to-run spread "
                f"({'/'.join(f'{x:.0%}' for x in spreads)} nncli/torch/jax); treat the ratios with care"
            )
    if "e2e" in res["names"]:
        rows.append(_e2e_row(res, notes))
    return rows, notes


def _row(name, tn, tt, tj, target, what, scale):
    """One table row from the repeat times of each library (tj may be empty: JAX not run)."""
    a, b = median(tn), median(tt)
    c = median(tj) if tj else None
    ratio = a / b
    met = "yes" if ratio <= target else "no"
    spreads = "/".join(f"{spread(x):.0%}" for x in (tn, tt, tj) if x)
    jax_ms = f"{c * scale:9.3f}" if c else f"{'—':>9}"
    jax_ratio = f"{a / c:6.2f}" if c else f"{'—':>6}"
    return (
        f"{name:14} {a * scale:9.3f} {b * scale:9.3f} {jax_ms} {ratio:7.2f} {'≤' + str(target):>7} "
        f"{met:>4} {jax_ratio} {spreads:>13}  {what}"
    )


def _e2e_row(res, notes) -> str:
    ok = {lib: [r for r in res["e2e"].get(lib, []) if "seconds" in r] for lib in ("nncli", "torch", "jax")}
    steps = res["e2e_steps"]
    if not ok["nncli"] or not ok["torch"]:
        bad = [r for r in res["e2e"]["nncli"] + res["e2e"]["torch"] if "seconds" not in r]
        why = (bad[0].get("unavailable") or bad[0].get("error")) if bad else "not run"
        return (
            f"{'e2e':14} {'—':>9} {'—':>9} {'—':>9} {'—':>7} {'≤1.0':>7} {'—':>4} {'—':>6} {'':>13}  "
            f"not run: {why}"
        )
    per_step = {lib: [r["seconds"] / steps for r in runs] for lib, runs in ok.items()}
    wall = median([r["process_wall"] for r in ok["nncli"]])
    acc = median([r.get("val_acc", float("nan")) for r in ok["torch"]])
    what = (
        f"nncli train mnist1d_cnn --threads {res['facts'].get('e2e_threads', '?')}, {steps} steps, "
        f"ms/step (whole process {wall:.2f} s); torch val acc {acc:.2f}"
    )
    if ok["jax"]:
        compile_s = median([r.get("first_step", float("nan")) for r in ok["jax"]])
        what += f"; jax incl. {compile_s:.2f} s first step (compilation)"
    return _row("e2e", per_step["nncli"], per_step["torch"], per_step["jax"], TARGETS["e2e"], what, 1e3)


def _roofline_rows(res: dict) -> list[str]:
    """FLOPs per step and each library's GFLOP/s beside this machine's measured SGEMM peak."""
    f, t = res["facts"], res["timing"]
    peaks = f.get("sgemm_peak_gflops")
    if not peaks:
        return []
    threads = str(f["threads"])
    peak = peaks.get(threads) or max(peaks.values())
    head = (
        f"{'workload':14} {'MFLOP/step':>11} {'nncli GF/s':>11} {'torch GF/s':>11} {'jax GF/s':>9} "
        f"{'nncli % peak':>13}  peak {peak:.1f} GFLOP/s on {threads} thread(s)"
    )
    rows = [head, "-" * len(head)]
    for name in [n for n in ORDER if n in res["names"]]:
        flops = next(
            (b["results"][name].get("flops") for b in t["nncli"] if name in b.get("results", {})), None
        )
        if not flops:
            continue
        rates = []
        for lib in ("nncli", "torch", "jax"):
            times, _, _ = _gather(t.get(lib, []), name)
            rates.append(flops / median(times) / 1e9 if times else None)
        cells = [f"{r:11.2f}" if r else f"{'—':>11}" for r in rates[:2]]
        cells.append(f"{rates[2]:9.2f}" if rates[2] else f"{'—':>9}")
        share = f"{rates[0] / peak:13.1%}" if rates[0] else f"{'—':>13}"
        rows.append(f"{name:14} {flops / 1e6:11.1f} {' '.join(cells)} {share}")
    return rows


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
    out = _header(res) + [""] + speed + [""] + _roofline_rows(res) + [""] + _memory_rows(res)
    out += [""] + notes if notes else []
    print("\n".join(out))
