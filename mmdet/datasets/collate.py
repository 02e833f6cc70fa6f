"""Batching samples from ``Collect`` into the batch dict of docs/design.md."""


def collate(samples):
    """Samples -> ``{'img': Tensor[B, 3, H, W], 'img_metas': list[dict], <key>: list[Tensor]}``.

    Images are zero-padded at the bottom and right to the batch's largest height and width;
    every other key (``gt_bboxes``, ``gt_labels``, ``gt_bboxes_ignore``) becomes a list of the
    per-image tensors. ``img_meta`` of each sample goes to ``img_metas``.
    """
    if not samples:
        raise ValueError('collate: got an empty batch')
    height = max(s['img'].shape[1] for s in samples)
    width = max(s['img'].shape[2] for s in samples)
    img = samples[0]['img'].new_zeros(len(samples), 3, height, width)
    for i, s in enumerate(samples):
        img[i, :, : s['img'].shape[1], : s['img'].shape[2]] = s['img']
    batch = dict(img=img, img_metas=[s['img_meta'] for s in samples])
    for key in samples[0]:
        if key not in ('img', 'img_meta'):
            batch[key] = [s[key] for s in samples]
    return batch
