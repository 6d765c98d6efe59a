"""``xray_triage`` preprocessing as paper 004 says ("converted to 8-bit grayscale and resized
to 224×224"), for films and for what is not a film: MONOCHROME1 shown as MONOCHROME2, colour
(RGB, palette) to grey by BT.601 luma, a multi-frame image's middle frame, PNG pictures, and
files that cannot be decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from pipelines.film_io import FilmUnreadable
from pipelines.xray_triage.preprocess import (
    PAPER_SIZE,
    InputSpec,
    from_8bit,
    grey_from_rgb,
    network_input,
    read_image,
    resized_8bit,
)

ROOT = "1.2.826.0.1.3680043.8.498.77"


def _dataset(pixels: np.ndarray, photometric: str, *, frames: int = 1) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(prefix=f"{ROOT}.")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(prefix=f"{ROOT}.")
    ds.SeriesInstanceUID = generate_uid(prefix=f"{ROOT}.")
    ds.Modality = "OT"
    ds.PhotometricInterpretation = photometric
    colour = photometric == "RGB"
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    bits = 8 * pixels.dtype.itemsize
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _ramp(rows: int = 300, columns: int = 200) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:columns]
    return ((r * 3 + c * 7) % 4096).astype(np.uint16)


def test_an_image_becomes_8_bit_grey_at_224_as_the_paper_says() -> None:
    grey = np.linspace(0, 65535, 1000 * 700).reshape(1000, 700).astype(np.uint16)
    small = resized_8bit(grey, PAPER_SIZE)
    assert small.shape == (224, 224) and small.dtype == np.uint8
    assert small.min() <= 2 and small.max() >= 253  # the full 8-bit range survives
    tensor = network_input(grey, InputSpec())
    assert tuple(tensor.shape) == (3, 224, 224) and tensor.dtype.is_floating_point
    assert float(tensor.min()) >= -1.0 and float(tensor.max()) <= 1.0
    assert np.allclose(tensor[0].numpy(), tensor[2].numpy())  # grey copied to 3 channels
    # 0 → −1 and 255 → +1 exactly (MONAI's ScaleIntensityRange, looked up per level)
    halves = np.zeros((1, 32, 32), dtype=np.uint8)
    halves[0, 16:] = 255
    levels = from_8bit(halves, InputSpec(size=32))
    assert float(levels.min()) == -1.0 and float(levels.max()) == 1.0


def test_area_resize_averages_rather_than_samples() -> None:
    stripes = np.zeros((448, 448), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: sampling would give 0 or 255 everywhere
    small = resized_8bit(stripes, 224)
    assert np.all(np.abs(small.astype(int) - 128) <= 1)


def test_monochrome1_is_shown_inverted_like_monochrome2(tmp_path: Path) -> None:
    pixels = _ramp()
    plain = _dataset(pixels, "MONOCHROME2")
    plain.BitsStored, plain.HighBit = 12, 11
    inverted = _dataset((4095 - pixels).astype(np.uint16), "MONOCHROME1")
    inverted.BitsStored, inverted.HighBit = 12, 11
    a = read_image(_write(plain, tmp_path / "m2.dcm"))
    b = read_image(_write(inverted, tmp_path / "m1.dcm"))
    assert a.how == b.how == "film"
    first, second = resized_8bit(a.grey, 64), resized_8bit(b.grey, 64)
    assert np.abs(first.astype(int) - second.astype(int)).max() <= 1
    assert first[-1, -1] != first[0, 0]  # not a blank image


def test_rgb_becomes_grey_by_bt601_luma(tmp_path: Path) -> None:
    rgb = np.zeros((40, 60, 3), dtype=np.uint8)
    rgb[:, :20] = (255, 0, 0)
    rgb[:, 20:40] = (0, 255, 0)
    rgb[:, 40:] = (0, 0, 255)
    image = read_image(_write(_dataset(rgb, "RGB"), tmp_path / "rgb.dcm"))
    assert image.how == "colour" and image.grey.dtype == np.uint8 and image.grey.shape == (40, 60)
    assert (int(image.grey[0, 0]), int(image.grey[0, 30]), int(image.grey[0, 50])) == (76, 150, 29)
    assert grey_from_rgb(np.array([[[10, 20, 30]]]))[0, 0] == pytest.approx(
        0.299 * 10 + 0.587 * 20 + 0.114 * 30
    )


def test_a_palette_colour_photo_is_read_as_grey() -> None:
    palette = Path(pydicom.__file__).parent / "data" / "test_files" / "examples_palette.dcm"
    image = read_image(palette)
    assert image.how == "colour" and image.grey.ndim == 2 and image.grey.dtype == np.uint8
    assert image.grey.std() > 10  # a picture, not a blank


def test_a_multi_frame_image_gives_its_middle_frame(tmp_path: Path) -> None:
    frames = np.stack([np.full((32, 32), 40 * (i + 1), dtype=np.uint8) for i in range(5)])
    frames[2, :16] = 0  # the middle frame has a dark half
    image = read_image(_write(_dataset(frames, "MONOCHROME2", frames=5), tmp_path / "cine.dcm"))
    assert image.how == "frame"
    assert image.grey[0, 0] == 0 and image.grey[-1, -1] == 255  # frame 3, stretched


def test_pictures_are_read_like_dicom_colour(tmp_path: Path) -> None:
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    Image.fromarray(rgb).save(tmp_path / "green.png")
    image = read_image(tmp_path / "green.png")
    assert image.how == "picture" and image.header is None
    assert int(image.grey[0, 0]) == 150  # 0.587 × 255


def test_files_that_cannot_be_decoded_say_so_by_name(tmp_path: Path) -> None:
    (tmp_path / "notes.dcm").write_text("not a DICOM file")
    with pytest.raises(FilmUnreadable, match=r"^notes\.dcm: not a readable DICOM file"):
        read_image(tmp_path / "notes.dcm")
    header_only = _dataset(_ramp(8, 8), "MONOCHROME2")
    del header_only.PixelData
    with pytest.raises(FilmUnreadable, match=r"^nopixels\.dcm: .*no pixel data"):
        read_image(_write(header_only, tmp_path / "nopixels.dcm"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(FilmUnreadable, match=r"^broken\.png: not a readable picture"):
        read_image(tmp_path / "broken.png")


@pytest.mark.parametrize(("size", "channels"), [(16, 3), (224, 2)])
def test_an_input_spec_that_cannot_work_is_refused(size: int, channels: int) -> None:
    with pytest.raises(ValueError):
        InputSpec(size=size, channels=channels)
