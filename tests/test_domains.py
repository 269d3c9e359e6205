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
    from raytrain.data.collection import load_domains

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
    from raytrain.data.collection import load_domains

    base = ["data.max_size=64", "data.patches.size=32", "data.val_images=3", "data.val_crop=48"]
    a = load_domains(load_config(None, [*base, "seed=0"]))
    b = load_domains(load_config(None, [*base, "seed=1", "data.split_seed=0"]))
    c = load_domains(load_config(None, [*base, "seed=1"]))
    assert a.split == b.split and a.val_names == b.val_names
    assert all(np.array_equal(p.noisy, q.noisy) for p, q in zip(a.val, b.val, strict=True))
    assert c.split != a.split  # without it the run's seed draws another split
    with pytest.raises(Exception, match="split_seed"):
        load_config(None, ["data.split_seed=-1"])


def test_unpaired_caps_keep_nested_subsets_and_drop_a_domain_at_zero():
    """data.unpaired (SeNM-VAE Table 7): each unpaired domain keeps the first images of the split's seeded order, so
    a smaller cap's images are within a larger one's; paired and validation images do not move; 0 empties a domain
    (the launcher then drops it from data.mix); a cap over what the split leaves is one line naming the key."""
    from raytrain.config import load_config
    from raytrain.data.domains import make_split

    def split(*sets):
        return make_split(40, load_config(None, ["data.val_images=4", "data.paired.count=6", *sets]).data, seed=3)

    full = split()
    small, large = split("data.unpaired.count=3"), split("data.unpaired.count=10")
    one_sided = split("data.unpaired.source=0", "data.unpaired.count=5")
    assert (len(full.source), len(full.target)) == (15, 15)
    assert (len(small.source), len(small.target), len(large.source), len(large.target)) == (3, 3, 10, 10)
    assert set(small.source) < set(large.source) < set(full.source)
    assert set(small.target) < set(large.target) < set(full.target)
    assert small.val == full.val and small.paired == full.paired and small.source == sorted(small.source)
    assert one_sided.source == [] and len(one_sided.target) == 5
    with pytest.raises(DataError, match=r"data.unpaired.target=16 is larger than the 15 noisy-only"):
        split("data.unpaired.count=2", "data.unpaired.target=16")
    with pytest.raises(DataError, match=r"data.unpaired.count=16 is larger than the 15 clean-only"):
        split("data.unpaired.count=16")


def test_table7_rows_reach_the_domains_senm_draws():
    """SeNM-VAE Table 7: the two-domain rows are the no_source / no_target variants (a 0 in data.mix), and a domain
    capped to 0 by data.unpaired is dropped by the launcher the same way; the others keep all three domains."""
    from raytrain.config import load_config
    from raytrain.config.loading import to_raw, validate
    from raytrain.data.collection import load_domains
    from raytrain.methods import method_class
    from raytrain.train.launch import without_empty_domains
    from raytrain.tune.space import trial_raw

    senm = method_class("senm")
    base = to_raw(load_config(None, ["method.name=senm", "data.max_size=96", "data.patches.size=32",
                                     "data.val_images=2", "data.paired.count=2"]))  # fmt: skip
    for variant, left in (("full", ("paired", "source", "target")), ("no_source", ("paired", "target")),
                          ("no_target", ("paired", "source"))):  # fmt: skip
        assert senm.domains_for(validate(trial_raw(base, {"variant": variant}), "t")) == left
    capped = validate(trial_raw(base, {"data.unpaired.target": 0, "data.unpaired.count": 3}), "t")
    col = load_domains(capped)
    assert (len(col.domains["source"]), len(col.domains["target"])) == (3, 0)
    assert senm.domains_for(without_empty_domains(capped, col)) == ("paired", "source")
