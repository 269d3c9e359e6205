import pytest

from raytrain.data.domains import split_semi, split_two_domain
from raytrain.errors import DataError


def _all(s):
    return [*s.val, *s.paired, *s.source, *s.target]


@pytest.mark.parametrize("kw", [{"fraction": 0.3}, {"fraction": 1.0}, {"count": 4}, {"count": 1}])
def test_semi_split_disjoint_complete_deterministic(kw):
    a, b = split_semi(17, 2, seed=0, **kw), split_semi(17, 2, seed=0, **kw)
    assert a == b
    items = _all(a)
    assert len(items) == len(set(items)) == 17
    assert len(a.val) == 2
    if "count" in kw:
        assert len(a.paired) == kw["count"]
    else:
        assert len(a.paired) == max(1, round(kw["fraction"] * 15))
    assert abs(len(a.source) - len(a.target)) <= 1


def test_seed_changes_the_split():
    assert split_semi(17, 2, 0, fraction=0.3) != split_semi(17, 2, 1, fraction=0.3)


def test_val_is_the_same_whatever_the_paired_fraction():
    # Comparable validation across an ablation over paired fractions.
    assert split_semi(17, 3, 0, fraction=0.1).val == split_semi(17, 3, 0, count=10).val


def test_two_domain_halves():
    s = split_two_domain(17, 2, 0)
    assert not s.paired and len(s.source) + len(s.target) == 15 and not set(s.source) & set(s.target)


def test_errors():
    with pytest.raises(DataError, match="larger than the 15 training images"):
        split_semi(17, 2, 0, count=16)
    with pytest.raises(DataError, match="leaves none"):
        split_semi(2, 2, 0)
    with pytest.raises(DataError, match="at least 2"):
        split_two_domain(3, 2, 0)


def test_tiles_split_by_tile_and_keep_validation_whole():
    import numpy as np

    from raytrain.config import load_config
    from raytrain.data.pipeline import load_domains

    base = ["data.max_size=128", "data.patches.size=32", "data.val_images=3", "data.val_crop=96"]
    whole = load_domains(load_config(None, base))
    col = load_domains(load_config(None, [*base, "data.tiles=32", "data.paired.count=10"]))
    assert col.val_names == whole.val_names and all(
        np.array_equal(a.clean, b.clean) for a, b in zip(col.val, whole.val, strict=True))  # fmt: skip
    sizes = col.split.sizes()
    assert sizes["val"] == 3 and sizes["paired"] == 10 and abs(sizes["source"] - sizes["target"]) <= 1
    assert all(c.shape[:2] == (32, 32) for c in col.domains["paired"].clean + col.domains["source"].clean)
    # a tile's clean and noisy halves are aligned crops of the same image
    c, n = col.domains["paired"].clean[0], col.domains["paired"].noisy[0]
    assert abs(float((n - c).std()) * 255 - 25) < 3
    with pytest.raises(DataError, match="larger than the .* training tiles"):
        load_domains(load_config(None, [*base, "data.tiles=32", "data.paired.count=100000"]))


def test_tiles_smaller_than_a_patch_are_rejected():
    from raytrain.config import load_config
    from raytrain.errors import ConfigError

    with pytest.raises(ConfigError, match="data.tiles=16 is smaller than data.patches.size=32"):
        load_config(None, ["data.tiles=16", "data.patches.size=32"])


def test_split_seed_keeps_the_split_and_the_noise_while_the_seed_varies():
    import numpy as np

    from raytrain.config import load_config
    from raytrain.data.pipeline import load_domains

    base = ["data.max_size=64", "data.patches.size=32", "data.val_images=3", "data.val_crop=48"]
    a = load_domains(load_config(None, [*base, "seed=0"]))
    b = load_domains(load_config(None, [*base, "seed=1", "data.split_seed=0"]))
    c = load_domains(load_config(None, [*base, "seed=1"]))
    assert a.split == b.split and a.val_names == b.val_names
    assert all(np.array_equal(p.noisy, q.noisy) for p, q in zip(a.val, b.val, strict=True))
    assert c.split != a.split  # without it the run's seed draws another split
    with pytest.raises(Exception, match="split_seed"):
        load_config(None, ["data.split_seed=-1"])
