"""The X/Y/Z grid image (media/grid.py) as A1111 lays it out: cells side by side, X labels in a band above, Y
labels in a band 3/4 of a cell wide on the left, margins between cells, Z values as X/Y grids in one row with
titles above; a missing cell is black."""
from __future__ import annotations

import numpy as np
from PIL import Image

from sdcodex.media.grid import draw_xyz_grid


def cells(n: int, size: int = 40) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (30 * i + 20, 200 - 20 * i, 90)) for i in range(n)]


def test_grid_layout_margins_and_z_row():
    imgs = cells(8)
    main, subs, layout = draw_xyz_grid(imgs, (2, 2, 2), ["Steps: 1", "Steps: 2"], ["CFG Scale: 3.0", "CFG: 7"],
                                       ["Seed: 1", "Seed: 2"], margin=6)
    assert layout["pad_left"] == 30 and layout["pad_top"] > 0 and layout["margin"] == 6
    sub_w, sub_h = 30 + 2 * 40 + 6, layout["pad_top"] + 2 * 40 + 6
    assert [s.size for s in subs] == [(sub_w, sub_h)] * 2
    assert main.width == 2 * sub_w and main.height > sub_h  # Z titles in a band above the row of X/Y grids
    top = main.height - sub_h
    for iz in range(2):
        for iy in range(2):
            for ix in range(2):
                x = iz * sub_w + layout["pad_left"] + ix * 46
                y = top + layout["pad_top"] + iy * 46
                cell = np.asarray(main.crop((x, y, x + 40, y + 40)))
                assert (cell == np.asarray(imgs[ix + 2 * iy + 4 * iz])).all()
    band = np.asarray(subs[0].crop((0, layout["pad_top"], 30, sub_h)))
    assert band.min() < 100  # the Y labels are drawn


def test_no_legend_is_the_bare_cells_and_missing_cells_are_black():
    imgs = cells(3) + [None]
    main, subs, layout = draw_xyz_grid(imgs, (2, 2, 1), ["a", "b"], ["c", "d"], [""], draw_legend=False, margin=8)
    assert main.size == (80, 80) and subs[0] is main and layout["pad_top"] == 0
    assert np.asarray(main)[40:, 40:].max() == 0
    assert (np.asarray(main)[:40, 40:] == np.asarray(imgs[1])).all()
    # only X labels (Y is Nothing): no left band
    main, _, layout = draw_xyz_grid(cells(2), (2, 1, 1), ["x1", "x2"], [""], [""])
    assert layout["pad_left"] == 0 and main.width == 80
