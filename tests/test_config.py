import pytest

from raytrain.config import AWGN, RunConfig, apply_overrides, flatten, load_config
from raytrain.errors import ConfigError


def test_defaults_validate():
    cfg = load_config(None)
    assert isinstance(cfg, RunConfig)
    assert cfg.method.name == "dncnn" and cfg.method.depth == 17 and cfg.method.width == 64
    assert cfg.data.patches.size == 64 and cfg.data.paired.fraction == 1.0
    assert isinstance(cfg.data.noise, AWGN) and cfg.data.noise.sigma == 25


def test_yaml_and_overrides_are_typed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  steps: 50\ndata:\n  noise: {kind: awgn, sigma: [5, 50]}\n")
    cfg = load_config(f, ["train.lr=3e-4", "method.width=8", "data.noise.sigma=[1, 2]"])
    assert cfg.train.steps == 50 and cfg.train.lr == pytest.approx(3e-4) and cfg.method.width == 8
    assert cfg.data.noise.sigma == (1.0, 2.0)


def test_one_mix_weight_is_set_without_zeroing_the_others(tmp_path):
    """data.mix weighs a domain it does not name 0: an override of one weight starts from the default mix when the
    config sets none (SeNM-VAE's no_source / no_target variants), and from the config's own mix when it does."""
    assert load_config(None, ["data.mix.source=0"]).data.mix == {"paired": 1.0, "source": 0.0, "target": 1.0}
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  mix: {paired: 2, target: 1}\n")
    assert load_config(f, ["data.mix.target=0.5"]).data.mix == {"paired": 2.0, "target": 0.5}


@pytest.mark.parametrize(
    "override, named",
    [
        ("train.stepz=5", "train.stepz"),
        ("data.noise.sigma=-5", "data.noise.awgn.sigma"),
        ("data.paired.fraction=0", "data.paired.fraction"),
        ("data.paired.fraction=1.5", "data.paired.fraction"),
        ("train.steps=abc", "train.steps"),
        ("method.name=foo", "method"),
        ("data.noise.kind=speckle", "data.noise"),
        ("scaling.num_workers=0", "scaling.num_workers"),
        ("data.unpaired.count=-1", "data.unpaired.count"),
    ],
)
def test_bad_values_name_the_key(override, named):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    msg = str(err.value)
    assert named.split(".")[0] in msg and "\n" not in msg
    assert named.replace(".awgn", "") in msg


def test_unknown_method_message():
    with pytest.raises(ConfigError, match="method.*'foo'"):
        load_config(None, ["method.name=foo"])


def test_sigma_range_order_and_paired_exclusive(tmp_path):
    with pytest.raises(ConfigError, match="low > high"):
        load_config(None, ["data.noise.sigma=[50, 5]"])
    f = tmp_path / "both.yaml"
    f.write_text("data: {paired: {fraction: 0.5, count: 3}}\n")
    with pytest.raises(ConfigError, match="not both"):
        load_config(f)
    # an override of one replaces the other (a sweep over the fraction of a config that gives a count)
    cfg = load_config(None, ["data.paired.fraction=0.5", "data.paired.count=3"])
    assert cfg.data.paired.count == 3 and cfg.data.paired.fraction is None


def test_bad_yaml_and_missing_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line"):
        load_config(f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    g = tmp_path / "list.yaml"
    g.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(g)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"train": {"steps": 3}}, ["train.steps.x=1"])


def test_flatten_roundtrip_keys():
    flat = flatten(load_config(None))
    assert flat["train.steps"] == 2000 and flat["method.name"] == "dncnn" and flat["data.noise.kind"] == "awgn"


def test_extends_deep_merges_and_a_new_tag_replaces_the_section(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\nmethod: {name: lir, scm: false, width: 8}\ndata: {noise: {kind: awgn, sigma: [5, 50]}}\n"
    )
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\ndata: {noise: {kind: poisson}}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.name == "child" and cfg.method.width == 8  # merged from the base
    assert cfg.data.noise.kind == "poisson"  # another kind: the base's sigma does not leak in


def test_extends_errors_name_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml: config file not found \(extended by .*c.yaml\)"):
        load_config(tmp_path / "c.yaml")


def test_set_of_another_kind_drops_the_old_kinds_keys():
    cfg = load_config(None, ["data.noise.sigma=[5,50]", "data.noise.kind=camera"])
    assert cfg.data.noise.kind == "camera"
    assert load_config(None, ["method.name=lir", "method.scm=false", "method.name=dncnn"]).method.name == "dncnn"


def test_the_committed_config_reference_is_current():
    """docs/config.md is generated from the typed configs; regenerate it with
    `raytrain config-reference --out docs/config.md`."""
    from pathlib import Path

    from raytrain.reference import config_reference

    committed = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    assert committed == config_reference(), (
        "docs/config.md is stale: run `raytrain config-reference --out docs/config.md`"
    )
    assert "`kl_z_weight`" in committed and "<= 1" in committed and "`bcm_weights`" in committed
