"""The one table scripts/bench builds: its rows, the raw numbers behind them,
and its markdown."""

ROWS = []
RAW = {}


def fmt(value, unit):
    if value is None:
        return "n/a"
    if unit == "cos":
        return f"{value:.7f}"
    if unit == "ms":
        return f"{value:.2f} ms"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.1f}"
    return f"{text} {unit}"


def add_row(figure, inferd, unit, *, peer_name=None, peer=None, peer_note=None, on="ratio",
            op=">=", threshold=None, target=None, note=None, load=None, peer_load=None):
    """One row. on="ratio": the target is inferd / peer op threshold; on="value":
    inferd op threshold; threshold None: no target (informational)."""
    ratio = inferd / peer if inferd is not None and peer else None
    subject = ratio if on == "ratio" else inferd
    met = None
    if threshold is not None and subject is not None:
        met = {">=": subject >= threshold, "<=": subject <= threshold, "<": subject < threshold}[op]
    row = {
        "figure": figure, "unit": unit, "inferd": inferd, "inferd_note": note,
        "peer_name": peer_name, "peer": peer, "peer_note": peer_note, "ratio": ratio,
        "target": target, "target_on": on, "op": op, "threshold": threshold, "met": met,
        "load_avg": load, "peer_load_avg": peer_load,
    }
    ROWS.append(row)
    return row


def cells(row):
    inferd = fmt(row["inferd"], row["unit"]) if row["inferd"] is not None else f"n/a: {row['inferd_note']}"
    if row["inferd"] is not None and row["inferd_note"]:
        inferd += f" ({row['inferd_note']})"
    if row["peer_name"] is None:
        peer = "—"
    elif row["peer"] is not None:
        peer = f"{row['peer_name']}: {fmt(row['peer'], row['unit'])}"
    else:
        peer = f"{row['peer_name']}: {row['peer_note'] or 'n/a'}"
    ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else "—"
    met = {True: "yes", False: "no", None: "—"}[row["met"]]
    loads = [f"{x:.2f}" for x in (row["load_avg"], row["peer_load_avg"]) if x is not None]
    return [row["figure"], inferd, peer, ratio, row["target"] or "—", met, " / ".join(loads) or "—"]


def table():
    head = ["figure", "inferd", "peer (name: value)", "ratio", "target", "met", "load avg"]
    rows = [[c.replace("|", "\\|") for c in cells(r)] for r in ROWS]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cs: "| " + " | ".join(c.ljust(w) for c, w in zip(cs, widths)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in rows])


def failed_rows(rows, reason):
    """Adds each (figure, unit, kwargs) with inferd n/a because of reason."""
    for figure, unit, kw in rows:
        add_row(figure, None, unit, note=reason, **kw)
