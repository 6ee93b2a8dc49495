"""``Sequential.summary``'s table, formatted as Keras prints it."""
from __future__ import annotations


def summary_lines(model) -> list[str]:
    """Model name, one row per layer (name and type, output shape, parameter count), totals."""
    rows = []
    shape: tuple = (None, None)
    for layer in model.layers:
        shape = layer.output_shape(shape)
        rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), f"{layer.count_params():,}"))
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(title), *(len(row[i]) for row in rows)) + 2 for i, title in enumerate(header)]
    rule = "+" + "+".join("-" * width for width in widths) + "+"

    def row_line(cells) -> str:          # text columns left-aligned, the count right-aligned
        return "|" + "|".join(f" {cell:<{width - 1}}" if i < 2 else f"{cell:>{width - 1}} "
                              for i, (cell, width) in enumerate(zip(cells, widths))) + "|"

    total = model.count_params()
    kilobytes = total * model.dtype.itemsize / 1024
    return [f'Model: "{model.name}"', rule, row_line(header), rule.replace("-", "="),
            *(row_line(row) for row in rows), rule,
            f" Total params: {total:,} ({kilobytes:.2f} KB)",
            f" Trainable params: {total:,} ({kilobytes:.2f} KB)",
            " Non-trainable params: 0 (0.00 B)"]
