"""Drawing helpers for sampling masks and density heat-maps (tools/visualize_masks.py, docs pictures).

Images here are RGB ``uint8`` arrays ``[H, W, 3]``; masks are arrays ``[h, w]`` on a block's
feature grid (a position counts as sampled where the mask is > 0). ``draw_detections`` draws
boxes with labels that do not overlap (``place_labels``); ``save_summary`` puts the pictures of
``tools/visualize_masks.py`` into one figure.
"""

import cv2
import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

SKIPPED_SHADE = (16, 24, 72)  # RGB: skipped positions are darkened towards this dark blue
GAP = 4  # white pixels between the panels of a grid
HEADER = 20  # pixels of the label strip above each panel
LABEL_FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_PAD = 2  # pixels around a detection label's text
CLASS_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180))


def fit_image(img, size):
    """``img`` (uint8 ``[h, w, 3]``) resized (cv2 INTER_AREA) so its longer side is ``size`` pixels."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
    return np.ascontiguousarray(cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA))


def mask_to_image(mask, img_shape, pad_shape, out_size):
    """A block's mask on the padded input's grid -> the same mask over the (unpadded) image.

    mask: array ``[h, w]`` covering the padded network input ``pad_shape`` (h, w, ...) at
    stride ``pad_h / h``; only its part covering the resized image ``img_shape`` is kept
    (``ceil(img_h * h / pad_h)`` rows, likewise columns) and resized, nearest neighbour, to
    ``out_size`` (H, W). Returns a float32 array ``[H, W]``.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2:
        raise ValueError(f'mask_to_image: mask must be an [h, w] array, got shape {mask.shape}')
    rows = int(np.ceil(img_shape[0] * mask.shape[0] / pad_shape[0]))
    cols = int(np.ceil(img_shape[1] * mask.shape[1] / pad_shape[1]))
    mask = mask[:rows, :cols]
    out_h, out_w = out_size
    ys = ((np.arange(out_h) + 0.5) * rows / out_h).astype(np.int64)
    xs = ((np.arange(out_w) + 0.5) * cols / out_w).astype(np.int64)
    return mask[ys[:, None], xs[None, :]]


def overlay_mask(img, mask, dim=0.3, shade=SKIPPED_SHADE):
    """Sampled positions as they are, the skipped (interpolated) ones darkened towards ``shade``.

    img: RGB uint8 ``[H, W, 3]``; mask: ``[H, W]`` (sampled where > 0). Returns RGB uint8
    ``[H, W, 3]``: ``img`` where sampled, ``dim * img + (1 - dim) * shade`` elsewhere (rounded to
    the nearest integer), so that even black regions show where they are skipped.
    """
    if img.shape[:2] != mask.shape:
        raise ValueError(f'overlay_mask: image {img.shape[:2]} and mask {mask.shape} differ in size')
    skipped = dim * img.astype(np.float32) + (1 - dim) * np.asarray(shade, dtype=np.float32)
    out = np.where((mask > 0)[..., None], img, np.clip(np.rint(skipped), 0, 255))
    return out.astype(np.uint8)


def panel_origin(row, col, panel_shape):
    """(y, x) of the top-left pixel of panel (row, col) in ``compose_grid``'s picture."""
    h, w = panel_shape[:2]
    return row * (HEADER + h + GAP) + HEADER, col * (w + GAP)


def compose_grid(panels, labels):
    """Lay equally sized RGB panels out in a grid, each under a one-line label.

    panels, labels: lists of rows (``panels[r][c]`` uint8 ``[H, W, 3]``, ``labels[r][c]`` str).
    Returns RGB uint8 ``[rows * (HEADER + H + GAP) - GAP, cols * (W + GAP) - GAP, 3]`` on
    white; panel (r, c) starts at ``panel_origin(r, c, (H, W))``.
    """
    h, w = panels[0][0].shape[:2]
    rows, cols = len(panels), len(panels[0])
    canvas = np.full((rows * (HEADER + h + GAP) - GAP, cols * (w + GAP) - GAP, 3), 255, np.uint8)
    for r in range(rows):
        if len(panels[r]) != cols or len(labels[r]) != cols:
            raise ValueError(f'compose_grid: row {r} has {len(panels[r])} panels, expected {cols}')
        for c in range(cols):
            if panels[r][c].shape != (h, w, 3):
                raise ValueError(
                    f'compose_grid: panel ({r}, {c}) is {panels[r][c].shape}, expected {(h, w, 3)}'
                )
            y, x = panel_origin(r, c, (h, w))
            canvas[y : y + h, x : x + w] = panels[r][c]
            scale = min(0.45, 0.9 * w / max(1, 9 * len(labels[r][c])))  # ~9 px per char at scale 0.45
            cv2.putText(canvas, labels[r][c], (x + 2, y - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1)
    return canvas


def save_rgb(path, img):
    """Write an RGB uint8 array as a PNG, maximally compressed (raises OSError when it cannot)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f'could not write {path}')


def save_density_heatmap(path, img, heat, title):
    """Plot ``heat`` (``[H, W]`` in [0, 1], the fraction of masks sampling each position) over a
    grey version of ``img`` (RGB uint8 ``[H, W, 3]``)."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    fig, ax = plt.subplots(figsize=(6, 6 * img.shape[0] / img.shape[1] + 0.6))
    ax.imshow(grey, cmap='gray', vmin=0, vmax=255)
    shown = ax.imshow(heat, cmap='inferno', vmin=0, vmax=1, alpha=0.55)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label='fraction of masks sampling the position')
    fig.suptitle(title, fontsize=10)  # over the figure: an axes title would run under the colour bar
    ax.axis('off')
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)


def plot_density_bars(ax, block_names, densities, title):
    """Bars of per-block densities on the matplotlib axes ``ax``: ``densities[i] = (d1, d2)`` of
    ``block_names[i]``."""
    d = np.asarray(densities, dtype=np.float64).reshape(len(block_names), 2)
    x = np.arange(len(block_names))
    ax.bar(x - 0.2, d[:, 0], 0.4, label='mask1')
    ax.bar(x + 0.2, d[:, 1], 0.4, label='mask2')
    ax.set_xticks(x, block_names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel('density')
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def save_density_bars(path, block_names, densities, title):
    """Bar chart of per-block densities: ``densities[i] = (d1, d2)`` of ``block_names[i]``."""
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(block_names) + 2), 3.5))
    plot_density_bars(ax, block_names, densities, title)
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)


def overlaps(a, b):
    """Whether the rectangles ``a`` and ``b`` (x, y, w, h) share any pixel."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def place_labels(boxes, sizes, shape):
    """Top-left corners (x, y) of one label per box, inside the image and overlapping no other label.

    boxes: ``[n, 4]`` (x1, y1, x2, y2) in pixels, the most important first; sizes: ``n`` label
    sizes (w, h); shape: the image's (H, W). A label goes on its box's top edge, above it where
    there is room, else just inside; if that spot overlaps a label placed before, the label moves
    to the nearest free height (directly under or over one of the placed labels) within the
    image; where no such height is free it keeps its spot. Returns a list of ``n`` (x, y).
    """
    img_h, img_w = shape[:2]
    placed = []
    for (x1, y1, _, _), (w, h) in zip(boxes, sizes):
        x = int(min(max(x1, 0), max(img_w - w, 0)))
        start = int(y1 - h if y1 - h >= 0 else max(y1, 0))
        candidates = [start] + [r[1] + r[3] for r in placed] + [r[1] - h for r in placed]
        free = [
            y
            for y in candidates
            if 0 <= y <= img_h - h and not any(overlaps((x, y, w, h), r) for r in placed)
        ]
        y = min(free, key=lambda c: (abs(c - start), c)) if free else start
        placed.append((x, y, w, h))
    return [(x, y) for x, y, _, _ in placed]


def draw_detections(img, result, class_names, score_thr, scale=1.0, font_scale=0.5):
    """Boxes scoring at least ``score_thr``, each with a filled ``class score`` label; no two
    labels overlap (``place_labels``, the best scores placed first).

    img: RGB uint8 ``[H, W, 3]``, the image drawn at ``scale`` times the size the boxes refer to;
    result: per-class ``list[np.ndarray[k, 5]]`` (x1, y1, x2, y2, score) as a detector returns it;
    class_names: one name per entry of ``result``. Returns the drawing (RGB uint8 ``[H, W, 3]``).
    """
    if len(class_names) != len(result):
        raise ValueError(f'draw_detections: {len(class_names)} class names for {len(result)} result classes')
    dets = [
        (float(score), label, np.asarray(box, dtype=np.float64) * scale)
        for label, rows in enumerate(result)
        for *box, score in np.asarray(rows).reshape(-1, 5)
        if score >= score_thr
    ]
    dets.sort(key=lambda d: -d[0])
    texts = [f'{class_names[label]} {score:.2f}' for score, label, _ in dets]
    sizes = []
    for text in texts:
        (w, h), baseline = cv2.getTextSize(text, LABEL_FONT, font_scale, 1)
        sizes.append((w + 2 * LABEL_PAD, h + baseline + 2 * LABEL_PAD))
    out = np.ascontiguousarray(img.copy())
    for _, label, box in dets:
        colour = CLASS_COLOURS[label % len(CLASS_COLOURS)]
        cv2.rectangle(out, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), colour, 2)
    for (x, y), (w, h), text, (_, label, _) in zip(
        place_labels([d[2] for d in dets], sizes, out.shape), sizes, texts, dets
    ):
        colour = CLASS_COLOURS[label % len(CLASS_COLOURS)]
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, -1)
        ink = (0, 0, 0) if sum(colour) > 382 else (255, 255, 255)
        baseline = cv2.getTextSize(text, LABEL_FONT, font_scale, 1)[1]
        cv2.putText(
            out,
            text,
            (x + LABEL_PAD, y + h - LABEL_PAD - baseline),
            LABEL_FONT,
            font_scale,
            ink,
            1,
            cv2.LINE_AA,
        )
    return out


def save_summary(path, panels, heat_img, heat, block_names, densities, title):
    """One figure of a SparseResNet's pictures: ``panels`` and the density heat-map side by side
    on top, the per-block density chart under them.

    panels: list of (caption, RGB uint8 ``[H, W, 3]``); heat_img, heat: as ``save_density_heatmap``
    (the same H x W); block_names, densities: as ``save_density_bars``; title: over the figure.
    """
    h, w = heat_img.shape[:2]
    cols = len(panels) + 1
    fig = plt.figure(figsize=(6 * cols, 6 * h / w + 3.6))
    grid = fig.add_gridspec(2, cols, height_ratios=[6 * h / w, 2.6])
    for i, (caption, img) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(img)
        ax.set_title(caption, fontsize=10)
        ax.axis('off')
    ax = fig.add_subplot(grid[0, -1])
    ax.imshow(cv2.cvtColor(heat_img, cv2.COLOR_RGB2GRAY), cmap='gray', vmin=0, vmax=255)
    ax.imshow(heat, cmap='inferno', vmin=0, vmax=1, alpha=0.55)
    ax.set_title('fraction of all masks sampling each position', fontsize=10)
    ax.axis('off')
    plot_density_bars(
        fig.add_subplot(grid[1, :]), block_names, densities, 'per-block densities on this image'
    )
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=100, bbox_inches='tight')
    plt.close(fig)
