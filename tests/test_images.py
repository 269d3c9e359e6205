import imageio.v3 as iio
import numpy as np
import pytest

from raytrain.data.images import check_min_size, list_images, load_collection, load_pairs, load_samples, read_image
from raytrain.errors import DataError

RNG = np.random.default_rng(0)


def write(path, arr):
    iio.imwrite(path, arr)
    return path


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".jpg"])
def test_formats_8bit(tmp_path, ext):
    arr = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    p = write(tmp_path / f"a{ext}", arr)
    rgb = read_image(p, "rgb")
    assert rgb.shape == (40, 50, 3) and rgb.dtype == np.float32 and 0 <= rgb.min() and rgb.max() <= 1
    if ext != ".jpg":  # lossless
        assert np.allclose(rgb, arr / 255.0, atol=1e-6)
    assert read_image(p, "gray").shape == (40, 50, 1)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit(tmp_path, ext):
    arr = RNG.integers(0, 65536, (30, 30), dtype=np.uint16)
    img = read_image(write(tmp_path / f"b{ext}", arr), "gray")
    assert np.allclose(img[..., 0], arr / 65535.0, atol=1e-6)


def test_rgba_drops_alpha_and_gray_to_rgb(tmp_path):
    arr = RNG.integers(0, 256, (20, 20, 4), dtype=np.uint8)
    rgb = read_image(write(tmp_path / "c.png", arr), "rgb")
    assert np.allclose(rgb, arr[..., :3] / 255.0, atol=1e-6)
    g = RNG.integers(0, 256, (20, 20), dtype=np.uint8)
    as_rgb = read_image(write(tmp_path / "g.png", g), "rgb")
    assert as_rgb.shape == (20, 20, 3) and np.allclose(as_rgb[..., 0], as_rgb[..., 2])


def test_corrupt_truncated_and_empty_files_name_the_file(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"zero.png: empty file"):
        read_image(tmp_path / "zero.png")
    good = write(tmp_path / "t.png", RNG.integers(0, 256, (64, 64), dtype=np.uint8)).read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 3])
    with pytest.raises(DataError, match=r"trunc.png: cannot decode"):
        read_image(tmp_path / "trunc.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"junk.jpg: cannot decode"):
        read_image(tmp_path / "junk.jpg")


def test_folders(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        load_collection(str(tmp_path / "empty"))
    for i in range(3):
        write(tmp_path / f"im{i}.png", RNG.integers(0, 256, (70, 90), dtype=np.uint8))
    imgs = load_collection(str(tmp_path), "gray", max_size=45)
    assert [im.name for im in imgs] == ["im0", "im1", "im2"] and imgs[0].pixels.shape == (35, 45, 1)


def test_pairs_must_match(tmp_path):
    c, n = tmp_path / "clean", tmp_path / "noisy"
    c.mkdir(), n.mkdir()
    for name in ("a", "b"):
        write(c / f"{name}.png", RNG.integers(0, 256, (32, 32), dtype=np.uint8))
    write(n / "a.png", RNG.integers(0, 256, (32, 32), dtype=np.uint8))
    write(n / "z.png", RNG.integers(0, 256, (32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match=r"clean-only \['b'\], noisy-only \['z'\]"):
        load_pairs(str(c), str(n), "gray")
    (n / "z.png").unlink()
    write(n / "b.png", RNG.integers(0, 256, (32, 40), dtype=np.uint8))
    with pytest.raises(DataError, match=r"b: size \(32, 40\) differs"):
        load_pairs(str(c), str(n), "gray")
    write(n / "b.png", RNG.integers(0, 256, (32, 32), dtype=np.uint8))
    assert len(load_pairs(str(c), str(n), "gray")) == 2


def test_images_smaller_than_the_patch(tmp_path):
    write(tmp_path / "tiny.png", RNG.integers(0, 256, (20, 30), dtype=np.uint8))
    imgs = load_collection(str(tmp_path))
    with pytest.raises(DataError, match=r"tiny: image is 20x30, smaller than the 64x64 patch"):
        check_min_size(imgs, 64, str(tmp_path))


def test_samples_are_offline_and_both_colours():
    gray, rgb = load_samples("gray"), load_samples("rgb")
    assert len(gray) == len(rgb) == 17
    assert all(im.pixels.shape[-1] == 1 for im in gray) and all(im.pixels.shape[-1] == 3 for im in rgb)
    assert all(im.pixels.dtype == np.float32 and im.pixels.max() <= 1 for im in gray)
