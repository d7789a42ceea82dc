"""Grid images for the X/Y/Z plot, drawn the way A1111 draws them: the cells side by side, X labels centred above
the columns, Y labels centred left of the rows (a left band 3/4 of a cell wide), an optional margin between
cells, and the Z values as X/Y grids in one row, each titled above. Fonts scale with the cell, as A1111's
(`(width + height) // 25`); the font is Pillow's own, so a grid looks the same on every machine."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont


@dataclass
class GridLayout:
    """Where the cells lie in an X/Y grid: the cell box, the label bands and the margin."""

    cell_width: int
    cell_height: int
    pad_left: int
    pad_top: int
    margin: int

    def cell_origin(self, ix: int, iy: int) -> tuple[int, int]:
        return (self.pad_left + (self.cell_width + self.margin) * ix,
                self.pad_top + (self.cell_height + self.margin) * iy)

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def _font(size: int) -> Any:
    return ImageFont.load_default(size=int(size))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """Word-wrap `text` into lines at most `width` pixels wide (a long word stays whole)."""
    if not text:
        return [""]
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}".strip() if line else word
            if line and width > 0 and draw.textlength(trial, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _text_block(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int,
                spacing: int) -> tuple[list[tuple[str, int, int, int, int]], int]:
    """Lines of a label (text, width, height, left and top offsets of the ink), and the block's height."""
    lines = []
    for line in _wrap(draw, text, font, width):
        box = draw.textbbox((0, 0), line or " ", font=font)
        lines.append((line, box[2] - box[0], box[3] - box[1], box[0], box[1]))
    height = sum(line[2] for line in lines) + spacing * (len(lines) - 1)
    return lines, (height if any(line[0] for line in lines) else 0)


def annotate(grid: Image.Image, cell_width: int, cell_height: int, cols: list[str], rows: list[str],
             margin: int = 0) -> tuple[Image.Image, GridLayout]:
    """Add A1111's legend bands around a grid of `len(cols)` x `len(rows)` cells of the given size."""
    font_size = max((cell_width + cell_height) // 25, 8)
    font = _font(font_size)
    spacing = max(font_size // 2, 1)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad_left = cell_width * 3 // 4 if any(rows) else 0
    col_blocks = [_text_block(measure, t, font, cell_width, spacing) for t in cols]
    row_blocks = [_text_block(measure, t, font, pad_left, spacing) for t in rows]
    top_text = max((h for _, h in col_blocks), default=0)
    pad_top = top_text + spacing * 2 if top_text else 0
    ncols, nrows = len(cols), len(rows)
    layout = GridLayout(cell_width, cell_height, pad_left, pad_top, margin)
    out = Image.new("RGB", (grid.width + pad_left + margin * (ncols - 1),
                            grid.height + pad_top + margin * (nrows - 1)), "white")
    for iy in range(nrows):
        for ix in range(ncols):
            box = (cell_width * ix, cell_height * iy, cell_width * (ix + 1), cell_height * (iy + 1))
            out.paste(grid.crop(box), layout.cell_origin(ix, iy))
    draw = ImageDraw.Draw(out)

    def draw_block(lines: list[tuple[str, int, int, int, int]], cx: float, top: float) -> None:
        y = top
        for text, w, h, left, ink_top in lines:  # place the ink (not the font's origin) in the band
            draw.text((cx - w / 2 - left, y - ink_top), text, font=font, fill=(0, 0, 0))
            y += h + spacing

    for ix, (lines, height) in enumerate(col_blocks):
        x, _ = layout.cell_origin(ix, 0)
        draw_block(lines, x + cell_width / 2, pad_top / 2 - height / 2)
    for iy, (lines, height) in enumerate(row_blocks):
        _, y = layout.cell_origin(0, iy)
        draw_block(lines, pad_left / 2, y + cell_height / 2 - height / 2)
    return out, layout


def image_grid(images: Sequence[Image.Image | None], cols: int, rows: int,
               cell: tuple[int, int] | None = None) -> Image.Image:
    """Cells side by side, row by row; each in a box of the largest cell's size (a missing cell stays black)."""
    present = [im for im in images if im is not None]
    w, h = cell or (max(im.width for im in present), max(im.height for im in present))
    out = Image.new("RGB", (w * cols, h * rows), "black")
    for i, im in enumerate(images):
        if im is not None:
            out.paste(im.convert("RGB"), ((i % cols) * w, (i // cols) * h))
    return out


def draw_xyz_grid(cells: Sequence[Image.Image | None], shape: tuple[int, int, int], x_labels: list[str],
                  y_labels: list[str], z_labels: list[str], *, draw_legend: bool = True,
                  margin: int = 0) -> tuple[Image.Image, list[Image.Image], dict[str, Any]]:
    """The plot's main grid, one X/Y grid per Z value, and the layout (cell box, bands) of the X/Y grids.

    `cells` are in grid order (x fastest, then y, then z); a missing cell (skipped, failed) is drawn black.
    With one Z value the main grid is that X/Y grid."""
    nx, ny, nz = shape
    present = [im for im in cells if im is not None]
    if not present:
        raise ValueError("no cell has an image")
    cell = (max(im.width for im in present), max(im.height for im in present))
    sub_grids: list[Image.Image] = []
    layout = GridLayout(cell[0], cell[1], 0, 0, 0)
    for iz in range(nz):
        part = list(cells[iz * nx * ny:(iz + 1) * nx * ny])
        grid = image_grid(part, nx, ny, cell)
        if draw_legend:
            grid, layout = annotate(grid, cell[0], cell[1], x_labels, y_labels, margin)
        sub_grids.append(grid)
    if nz == 1:
        main = sub_grids[0]
    else:
        sw, sh = max(g.width for g in sub_grids), max(g.height for g in sub_grids)
        main = image_grid(sub_grids, nz, 1, (sw, sh))
        if draw_legend:
            main, _ = annotate(main, sw, sh, z_labels, [""])
    return main, sub_grids, layout.to_json()
