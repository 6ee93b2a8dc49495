"""Tables (Markdown) and charts (matplotlib) from a results JSON."""
from __future__ import annotations

from pathlib import Path

NAMES = {"npembed": "npembed (Keras-exact Adam)", "keras": "Keras fit", "keras_jit": "Keras fit, jit_compile=True",
         "torch": "PyTorch eager", "npembed_lazy": "npembed, lazy Adam"}


def markdown_tables(results: dict) -> str:
    w = results["workload"]
    lines = [f"Training: {w['train_steps']:,} steps of batch 10 ({w['train_tokens']:,} tokens); "
             f"prediction: {w['predict_reviews']:,} reviews.", "",
             "| framework | epoch s (median) | min - max | ms/step | tokens/s | predict s | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in results["frameworks"].items():
        e = entry["epoch_seconds"]
        predict = f"{entry['predict_seconds']['median']:.2f}" if "predict_seconds" in entry else "-"
        label = NAMES.get(name, name)
        if entry.get("steps_timed", w["train_steps"]) < w["train_steps"]:
            label += (f" (timed on {entry['steps_timed']} steps after a compiling pass of "
                      f"{entry['warmup_epoch_seconds'][0]:.0f} s; epoch extrapolated)")
        lines.append(f"| {label} | {e['median']:.2f} | {e['min']:.2f} - {e['max']:.2f} | "
                     f"{entry['ms_per_step']:.3f} | {entry['tokens_per_second']:,.0f} | {predict} | "
                     f"{entry['train_peak_rss_mb']:.0f} |")
    lines += ["", "| ratio | training epoch | prediction | peak RSS |", "|---|---|---|---|"]
    for name, ratio in results["ratios"].items():
        predict = f"{ratio['predict']:.3f}x" if ratio["predict"] is not None else "-"
        lines.append(f"| {name} | {ratio['train_epoch']:.3f}x | {predict} | {ratio['train_peak_rss']:.3f}x |")
    floor = results["floor"]
    lines += ["", f"Floor: {floor['bytes_per_step'] / 1e6:.2f} MB of memory traffic per step at "
                  f"{floor['copy_bandwidth_gb_s']:.1f} GB/s copy bandwidth = {floor['floor_ms_per_step']:.3f} ms/step; "
                  f"npembed: {results['frameworks']['npembed']['ms_per_step']:.3f} ms/step "
                  f"({results['frameworks']['npembed']['ms_per_step'] / floor['floor_ms_per_step']:.1f}x the floor)."]
    if results.get("sweeps"):
        lines += ["", "| sweep | point | " + " | ".join(NAMES.get(f, f) for f in results["sweeps"]) + " |",
                  "|---|---|" + "---|" * len(results["sweeps"])]
        rows: dict = {}
        for framework, points in results["sweeps"].items():
            for p in points:
                key = (p.get("sweep", "base"), f"V={p['vocab']:,} D={p['dim']} B={p['batch']} L={p['length']}")
                rows.setdefault(key, {})[framework] = p["ms_per_step"]
        for (sweep, point), values in rows.items():
            cells = [f"{values[f]:.3f}" if f in values else "" for f in results["sweeps"]]
            lines.append(f"| {sweep} | {point} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_charts(results: dict, folder: Path) -> None:
    from npembed.plots import _pyplot
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "epoch_seconds", "Training epoch (2,500 steps), s"),
                           (axes[1], "predict_seconds", "Predicting 25,000 reviews, s")):
        names = [n for n in results["frameworks"] if key in results["frameworks"][n]]
        medians = [results["frameworks"][n][key]["median"] for n in names]
        ax.barh([NAMES.get(n, n) for n in names], medians, color=["C2" if n == "npembed" else "C0" for n in names])
        for i, value in enumerate(medians):
            ax.text(value, i, f" {value:.2f}", va="center")
        ax.set_title(title)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(folder / "bench_epoch.png", dpi=100)
    plt.close(fig)
    sweeps = {s: [] for s in ("vocab", "dim", "batch", "length")}
    for framework, points in results.get("sweeps", {}).items():
        for p in points:
            if p.get("sweep") in sweeps:
                sweeps[p["sweep"]].append((framework, p[p["sweep"]], p["ms_per_step"]))
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    labels = {"vocab": "vocabulary size", "dim": "embedding dimension", "batch": "batch size", "length": "review length"}
    for ax, (sweep, entries) in zip(axes, sweeps.items()):
        for framework in dict.fromkeys(f for f, _, _ in entries):
            xs = [x for f, x, _ in entries if f == framework]
            ys = [y for f, _, y in entries if f == framework]
            ax.plot(xs, ys, "o-", label=NAMES.get(framework, framework))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(labels[sweep])
        ax.set_ylabel("ms per training step")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "bench_sweeps.png", dpi=100)
    plt.close(fig)
