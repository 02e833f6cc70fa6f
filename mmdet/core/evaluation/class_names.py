"""Comparing two class lists by name and order (label ``i + 1`` is class ``i`` of the list)."""


def class_mismatch(found, expected, found_in, expected_in):
    """``None`` when ``found`` and ``expected`` are the same names in the same order, else a
    sentence saying how they differ, naming the sources ``found_in`` / ``expected_in``
    (e.g. ``'the checkpoint'``, ``'the dataset'``)."""
    found, expected = [str(c) for c in found], [str(c) for c in expected]
    if found == expected:
        return None
    if sorted(found) == sorted(expected):
        i = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b)
        return (
            f'the same {len(found)} class names in another order: class {i + 1} is {found[i]!r} in '
            f'{found_in} but {expected[i]!r} in {expected_in}'
        )
    only_found = [c for c in found if c not in expected]
    only_expected = [c for c in expected if c not in found]
    parts = [f'{len(found)} classes in {found_in}, {len(expected)} in {expected_in}']
    if only_found:
        parts.append(f'only in {found_in}: {only_found[:10]}')
    if only_expected:
        parts.append(f'only in {expected_in}: {only_expected[:10]}')
    return '; '.join(parts)
