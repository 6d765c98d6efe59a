"""Images that are not radiographs, for ``xray_types``: photos, scanned documents and
screenshots, such as reach a PACS as CR or SC by mistake (paper 004, module I).

* **photo** — an outdoor or indoor scene: a sky gradient over ground or a wall and
  floor, textured regions (grass, gravel, wood), objects (discs, boxes, poles, hills),
  a soft light fall-off, defocus blur and sensor noise; colour, or now and then grey.
* **document** — a scanned page: off-white paper with a heading, paragraphs of
  text-like glyph rows, sometimes a table or a logo, a stamp or a signature; a slight
  skew, the scanner's shading and noise; grey or colour.
* **screenshot** — a desktop or app: a flat background, windows with title bars and
  buttons, menus, text rows, icons and panels in flat colours; colour or grey.

Everything is vectorised numpy drawn from a ``numpy`` generator; grey images are
float32 in [0, 1] (1 = white), colour images uint8 RGB.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["NON_XRAY_KINDS", "render_non_xray"]

NON_XRAY_KINDS: tuple[str, ...] = ("photo", "document", "screenshot")

_F = npt.NDArray[np.float32]


def _smooth(rng: np.random.Generator, rows: int, cols: int, cell: float) -> _F:
    """Smooth unit-ish noise with features about ``cell`` pixels wide (bilinear)."""
    gr, gc = int(rows / cell) + 2, int(cols / cell) + 2
    coarse = rng.standard_normal((gr, gc)).astype(np.float32)
    ri = np.arange(rows, dtype=np.float32) / np.float32(cell)
    ci = np.arange(cols, dtype=np.float32) / np.float32(cell)
    r0, c0 = ri.astype(np.intp), ci.astype(np.intp)
    fr, fc = (ri - r0)[:, None], (ci - c0)[None, :]
    across = coarse[:, c0] * (1 - fc) + coarse[:, c0 + 1] * fc
    return (across[r0] * (1 - fr) + across[r0 + 1] * fr).astype(np.float32)


def _fractal(rng: np.random.Generator, rows: int, cols: int, cell: float) -> _F:
    out = np.zeros((rows, cols), dtype=np.float32)
    amp = 1.0
    while cell >= 1.5:
        out += np.float32(amp) * _smooth(rng, rows, cols, cell)
        cell /= 2
        amp *= 0.6
    return out


def _box_blur(img: _F, radius: int) -> _F:
    """A separable box blur over the first two axes (edges replicated)."""
    if radius < 1:
        return img
    for axis in (0, 1):
        n = img.shape[axis]
        pad = [(0, 0)] * img.ndim
        pad[axis] = (radius + 1, radius)
        p = np.pad(img, pad, mode="edge")
        c = np.cumsum(p, axis=axis, dtype=np.float32)
        hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        img = (hi - lo) / np.float32(2 * radius + 1)
    return img.astype(np.float32)


def _colour(rng: np.random.Generator, lo: float = 0.0, hi: float = 1.0) -> _F:
    return rng.uniform(lo, hi, 3).astype(np.float32)


def _paint(canvas: _F, mask: npt.NDArray[np.bool_] | _F, colour: _F) -> None:
    if mask.dtype == np.bool_:
        canvas[mask] = colour
    else:
        a = mask[..., None]
        canvas *= 1 - a
        canvas += a * colour


def _photo(rng: np.random.Generator, rows: int, cols: int) -> _F:
    yy = np.linspace(0, 1, rows, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, cols, dtype=np.float32)[None, :]
    img = np.empty((rows, cols, 3), dtype=np.float32)
    outdoor = rng.random() < 0.6
    horizon = rng.uniform(0.3, 0.7)
    tilt = rng.uniform(-0.15, 0.15)
    line = horizon + tilt * (xx - 0.5)
    below = yy > line
    if outdoor:
        top, bottom = _colour(rng, 0.2, 0.6), _colour(rng, 0.6, 1.0)
        top[2] = max(top[2], rng.uniform(0.5, 1.0))
        sky = top + (bottom - top) * (yy / max(horizon, 0.1))[..., None]
        img[:] = np.broadcast_to(sky, (rows, 1, 3))
        ground = _colour(rng, 0.1, 0.6)
        tex = _fractal(rng, rows, cols, rng.uniform(8, 40))[..., None]
        g = ground * (1 + 0.25 * tex) * (0.7 + 0.5 * yy[..., None])
        img[below] = np.broadcast_to(g, img.shape)[below]
        clouds = _fractal(rng, rows, cols, cols / 4)
        cl = np.clip(clouds - rng.uniform(0.2, 1.2), 0, 1)[..., None] * (~below)[..., None]
        img += cl * (1 - img) * np.float32(0.8)
        for _ in range(int(rng.integers(0, 4))):  # hills
            cx, w, h = rng.uniform(0, 1), rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.25)
            hill = yy > line - h * np.exp(-(((xx - cx) / w) ** 2) * 4)
            hill &= ~below
            _paint(img, hill, _colour(rng, 0.1, 0.5) * (1 + 0.1 * _smooth(rng, 1, 1, 1)[0, 0]))
    else:
        wall, floor = _colour(rng, 0.3, 0.95), _colour(rng, 0.15, 0.7)
        img[:] = wall
        img *= (0.8 + 0.2 * _smooth(rng, rows, cols, cols / 3))[..., None]
        planks = np.sin(xx * rng.uniform(20, 60) + 3 * _smooth(rng, rows, cols, 30)) > 0.9
        fl = floor * (0.85 + 0.15 * _fractal(rng, rows, cols, 20))[..., None]
        fl = np.where(planks[..., None], fl * 0.7, fl)
        img[below] = fl[below]
    # objects: discs, boxes, poles, with shading
    for _ in range(int(rng.integers(2, 9))):
        cx, cy = rng.uniform(0, 1), rng.uniform(0.2, 1.0)
        size = rng.uniform(0.04, 0.25)
        col = _colour(rng)
        shape = rng.integers(3)
        if shape == 0:
            d = ((xx - cx) / size) ** 2 + ((yy - cy) / (size * rng.uniform(0.6, 1.4))) ** 2
            mask = np.clip((1 - d) * 8, 0, 1).astype(np.float32)
            shade = 0.6 + 0.4 * np.clip(
                1 - ((xx - cx + size / 3) ** 2 + (yy - cy + size / 3) ** 2) / size**2, 0, 1
            )
            _paint(img, mask, col)
            img *= (1 - mask * (1 - shade))[..., None].astype(np.float32)
        elif shape == 1:
            w, h = size, size * rng.uniform(0.5, 2.0)
            mask = (np.abs(xx - cx) < w) & (np.abs(yy - cy) < h)
            _paint(img, mask, col)
            side = mask & (xx > cx + 0.4 * w)
            img[side] *= np.float32(0.75)
        else:
            mask = (np.abs(xx - cx) < size * 0.08) & (yy > cy - size * 2)
            _paint(img, mask, col * 0.6)
            leaf = ((xx - cx) / size) ** 2 + ((yy - cy + size * 2) / size) ** 2 < 1
            leaf_tex = 0.7 + 0.3 * _smooth(rng, rows, cols, 4)
            img[leaf] = _colour(rng, 0.05, 0.6) * leaf_tex[leaf][:, None]
    # light fall-off, defocus, sensor noise
    vig = 1 - rng.uniform(0, 0.5) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2
    img *= vig[..., None]
    img = _box_blur(img, int(rng.integers(0, 3)))
    img *= np.float32(rng.uniform(0.7, 1.25))
    img += rng.normal(0, rng.uniform(0.005, 0.04), img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def _glyph_rows(
    img: _F,
    rng: np.random.Generator,
    top: int,
    left: int,
    right: int,
    line_h: int,
    lines: int,
    ink: float,
) -> int:
    """Rows of word blobs made of glyph-like strokes; returns the row below the last."""
    rows, cols = img.shape
    gh = max(2, int(line_h * 0.6))
    gw = max(1, int(gh * 0.55))
    r = top
    for li in range(lines):
        if r + gh >= rows:
            break
        c = left + (int(rng.integers(0, 4 * gw)) if li == 0 else 0)
        end = right if li < lines - 1 else left + int((right - left) * rng.uniform(0.3, 0.9))
        while c < end:
            n = int(rng.integers(2, 10))
            wlen = n * (gw + 1)
            if c + wlen > end:
                break
            band = img[r : r + gh, c : c + wlen]
            # glyphs: vertical strokes, a few ascenders/descenders, cross bars
            cols_on = (np.arange(wlen) % (gw + 1)) < gw
            pattern = rng.random((gh, wlen)) < 0.45
            pattern[:, ~cols_on] = False
            pattern[: gh // 3, :] &= rng.random(wlen) < 0.3
            band[pattern] = np.minimum(band[pattern], np.float32(ink))
            c += wlen + gw + 1
        r += line_h
    return r


def _document(rng: np.random.Generator, rows: int, cols: int) -> _F:
    paper = rng.uniform(0.85, 0.99)
    img = np.full((rows, cols), paper, dtype=np.float32)
    img += np.float32(0.02) * _smooth(rng, rows, cols, max(rows / 6, 2))
    margin = int(cols * rng.uniform(0.07, 0.14))
    ink = rng.uniform(0.05, 0.35)
    line_h = max(4, int(rows * rng.uniform(0.014, 0.03)))
    r = int(rows * rng.uniform(0.05, 0.1))
    if rng.random() < 0.5:  # a logo
        lr, lc = int(rows * 0.06), int(cols * 0.09)
        yy, xx = np.ogrid[:rows, :cols]
        cx = cols - margin - lc if rng.random() < 0.5 else margin + lc
        logo = (yy - r - lr) ** 2 + (xx - cx) ** 2 < lr * lr
        img[logo] = np.float32(rng.uniform(0.2, 0.6))
    r = _glyph_rows(img, rng, r, margin, int(cols * 0.6), int(line_h * 1.8), 1, ink * 0.6)
    r += line_h
    while r < rows - int(rows * 0.1):
        choice = rng.random()
        if choice < 0.2:  # a table
            nr, nc = int(rng.integers(3, 8)), int(rng.integers(2, 6))
            cw = (cols - 2 * margin) // nc
            th = nr * int(line_h * 1.5)
            if r + th >= rows - int(rows * 0.08):
                break
            for i in range(nr + 1):
                y = r + i * int(line_h * 1.5)
                img[y : y + 1, margin : margin + nc * cw] = np.float32(ink)
            for j in range(nc + 1):
                x = margin + j * cw
                img[r : r + th, x : x + 1] = np.float32(ink)
            for i in range(nr):
                for j in range(nc):
                    _glyph_rows(
                        img,
                        rng,
                        r + i * int(line_h * 1.5) + line_h // 3,
                        margin + j * cw + 3,
                        margin + (j + 1) * cw - 3,
                        line_h,
                        1,
                        ink,
                    )
            r += th + line_h
        else:
            lines = int(rng.integers(2, 9))
            r = _glyph_rows(img, rng, r, margin, cols - margin, line_h, lines, ink) + line_h
    if rng.random() < 0.3:  # a signature scrawl
        t = np.linspace(0, 1, 400)
        xs = (margin + t * cols * 0.25).astype(np.intp)
        ys = (rows * 0.9 + np.sin(t * rng.uniform(15, 40)) * rows * 0.015).astype(np.intp)
        ok = (ys >= 0) & (ys < rows) & (xs < cols)
        img[ys[ok], xs[ok]] = np.float32(ink)
    # skew: shear rows and columns slightly (a small rotation)
    ang = math.radians(rng.uniform(-3, 3))
    shift_r = (np.arange(cols) * math.tan(ang)).astype(int)
    idx = (np.arange(rows)[:, None] + shift_r[None, :]) % rows
    img = img[idx, np.arange(cols)[None, :]]
    shift_c = (np.arange(rows) * -math.tan(ang)).astype(int)
    idx = (np.arange(cols)[None, :] + shift_c[:, None]) % cols
    img = img[np.arange(rows)[:, None], idx]
    # scanner: shading at one edge, blur, noise, dark border where the lid was open
    xx = np.linspace(0, 1, cols, dtype=np.float32)[None, :]
    img *= np.float32(1) - np.float32(rng.uniform(0, 0.15)) * np.exp(-xx * rng.uniform(5, 30))
    img = _box_blur(img, int(rng.integers(0, 2)))
    img += rng.normal(0, rng.uniform(0.005, 0.03), img.shape).astype(np.float32)
    if rng.random() < 0.3:
        b = int(rng.integers(1, max(2, cols // 40)))
        img[:, :b] = np.float32(rng.uniform(0.0, 0.3))
    return np.clip(img, 0, 1).astype(np.float32)


def _screenshot(rng: np.random.Generator, rows: int, cols: int) -> _F:
    img = np.empty((rows, cols, 3), dtype=np.float32)
    dark = rng.random() < 0.35
    bg = _colour(rng, 0.0, 0.3) if dark else _colour(rng, 0.4, 1.0)
    img[:] = bg
    if rng.random() < 0.4:  # a wallpaper gradient
        yy = np.linspace(0, 1, rows, dtype=np.float32)[:, None, None]
        img += (_colour(rng, -0.3, 0.3) * yy).astype(np.float32)
    bar_h = max(4, int(rows * rng.uniform(0.03, 0.05)))
    if rng.random() < 0.7:  # task bar
        img[rows - bar_h :] = _colour(rng, 0.0, 0.4)
        for k in range(int(rng.integers(3, 9))):
            x = int(bar_h * (1.2 * k + 0.3))
            img[rows - bar_h + 2 : rows - 2, x : x + bar_h - 4] = _colour(rng)
    for _ in range(int(rng.integers(1, 4))):
        h, w = int(rows * rng.uniform(0.35, 0.85)), int(cols * rng.uniform(0.35, 0.9))
        r0, c0 = int(rng.integers(0, rows - h)), int(rng.integers(0, cols - w))
        face = _colour(rng, 0.1, 0.25) if dark else _colour(rng, 0.85, 1.0)
        text = np.float32(0.9) if dark else np.float32(0.1)
        img[r0 + 2 : r0 + h + 2, c0 + 2 : c0 + w + 2] *= np.float32(0.7)  # shadow
        img[r0 : r0 + h, c0 : c0 + w] = face
        title = _colour(rng, 0.1, 0.9)
        img[r0 : r0 + bar_h, c0 : c0 + w] = title
        for k, colr in enumerate(((0.9, 0.3, 0.3), (0.9, 0.8, 0.3), (0.3, 0.8, 0.4))):
            x = c0 + w - (k + 1) * int(bar_h * 1.2)
            img[r0 + 2 : r0 + bar_h - 2, x : x + bar_h - 4] = np.array(colr, np.float32)
        grey = img[r0 + bar_h : r0 + h, c0 : c0 + w, 0].copy()
        side = int(w * rng.uniform(0.15, 0.3)) if rng.random() < 0.6 else 0
        if side:
            img[r0 + bar_h : r0 + h, c0 : c0 + side] = _colour(rng, 0.2, 0.9)
        grey[:] = 1.0
        _glyph_rows(
            grey,
            rng,
            int(bar_h * 0.6),
            side + 6,
            w - 6,
            max(4, int(rows * rng.uniform(0.02, 0.035))),
            int(rng.integers(3, 20)),
            0.0,
        )
        ink = grey < 0.5
        region = img[r0 + bar_h : r0 + h, c0 : c0 + w]
        region[ink] = text
        for _b in range(int(rng.integers(0, 4))):  # buttons
            bh, bw = bar_h, int(bar_h * rng.uniform(2.5, 5))
            by = int(rng.integers(0, max(1, h - bar_h - bh)))
            bx = int(rng.integers(side, max(side + 1, w - bw)))
            region[by : by + bh, bx : bx + bw] = _colour(rng, 0.2, 0.9)
        if rng.random() < 0.4:  # a picture or chart in the window
            ph, pw = region.shape[0] // 3, region.shape[1] // 3
            if ph > 4 and pw > 4:
                region[-ph - 4 : -4, -pw - 4 : -4] = _photo(rng, ph, pw)
    if rng.random() < 0.5:  # a mouse pointer
        y, x = int(rng.integers(0, rows - 12)), int(rng.integers(0, cols - 8))
        for k in range(10):
            img[y + k, x : x + max(1, k // 2 + 1)] = 1.0 if dark else 0.0
    return np.clip(img, 0, 1).astype(np.float32)


def render_non_xray(
    kind: str, rng: np.random.Generator, size: int
) -> tuple[npt.NDArray[np.float32] | npt.NDArray[np.uint8], None]:
    """One non-X-ray image of ``kind``: float32 grey in [0, 1] or uint8 RGB; no spacing."""
    if kind == "photo":
        aspect = float(rng.choice([0.75, 0.5625, 0.667, 1.0]))
        rows, cols = (
            (round(size * aspect), size) if rng.random() < 0.75 else (size, round(size * aspect))
        )
        rgb = _photo(rng, rows, cols)
        grey = rng.random() < 0.25
    elif kind == "document":
        rows, cols = size, round(size * rng.uniform(0.68, 0.78))
        if rng.random() < 0.15:
            rows, cols = cols, rows
        page = _document(rng, rows, cols)
        if rng.random() < 0.6:
            return page, None
        tint = rng.uniform(0.9, 1.0, 3).astype(np.float32)
        rgb = np.clip(page[..., None] * tint, 0, 1)
        grey = False
    elif kind == "screenshot":
        aspect = float(rng.choice([0.5625, 0.625, 0.75]))
        rows, cols = round(size * aspect), size
        rgb = _screenshot(rng, rows, cols)
        grey = rng.random() < 0.2
    else:
        raise ValueError(f"unknown non-X-ray kind {kind!r}; one of {NON_XRAY_KINDS}")
    if grey:
        g = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(g, 0, 1).astype(np.float32), None
    return np.rint(rgb * 255).astype(np.uint8), None
