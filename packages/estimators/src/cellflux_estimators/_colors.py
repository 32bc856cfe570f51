"""Default colours of states (scanpy's 20-colour palette), without importing matplotlib."""

from __future__ import annotations

__all__ = ["PALETTE", "colors_for"]

PALETTE = (
    "#1f77b4", "#ff7f0e", "#279e68", "#d62728", "#aa40fc", "#8c564b", "#e377c2", "#b5bd61", "#17becf", "#aec7e8",
    "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#ad494a", "#8c6d31",
)  # fmt: skip


def colors_for(names: list[str], reference: dict[str, str] | None = None) -> dict[str, str]:
    """A colour per name: from ``reference`` (cluster colours, matched on the name before ``_<n>``) or a palette."""
    out = {}
    for i, name in enumerate(names):
        base = name.rsplit("_", 1)[0] if "_" in name and name.rsplit("_", 1)[1].isdigit() else name
        if reference and name in reference:
            out[name] = reference[name]
        elif reference and base in reference:
            out[name] = reference[base]
        else:
            out[name] = PALETTE[i % len(PALETTE)]
    return out
