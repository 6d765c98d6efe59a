"""``[http]`` settings (off by default; a non-loopback address needs a secret) and the
PNG writer of the results pages' thumbnails."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from dicom_node.http.thumbnails import encode_png, to_display
from dicom_node.settings import HttpSettings, NodeSettings, SettingsError, load_settings


def test_the_http_side_is_off_and_on_loopback_by_default() -> None:
    http = NodeSettings().http
    assert (http.enabled, http.bind_address, http.show_patient_identifiers) == (
        False,
        "127.0.0.1",
        False,
    )


def test_a_non_loopback_address_needs_a_token_or_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="0.0.0.0 is not a loopback address"):
        HttpSettings(enabled=True, bind_address="0.0.0.0")
    HttpSettings(enabled=False, bind_address="0.0.0.0")  # off: nothing is bound
    HttpSettings(enabled=True, bind_address="::1")
    monkeypatch.setenv("HTTP_TOKEN_FOR_TEST", "secret")
    HttpSettings(enabled=True, bind_address="0.0.0.0", token_env="HTTP_TOKEN_FOR_TEST")


def test_a_named_variable_must_be_set_and_basic_needs_user_and_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HTTP_TOKEN_FOR_TEST", raising=False)
    with pytest.raises(ValidationError, match="HTTP_TOKEN_FOR_TEST not set"):
        HttpSettings(enabled=True, token_env="HTTP_TOKEN_FOR_TEST")
    monkeypatch.setenv("HTTP_BASIC_FOR_TEST", "no-colon")
    with pytest.raises(ValidationError, match="must hold user:password"):
        HttpSettings(enabled=True, basic_env="HTTP_BASIC_FOR_TEST")


def test_the_refusal_reads_as_one_line_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[http]\nenabled = true\nbind_address = "10.0.0.5"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    (problem,) = caught.value.problems
    assert problem.startswith("http: ") and "10.0.0.5 is not a loopback address" in problem


def _decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and b"IEND" in chunks
    return width, height, color, zlib.decompress(chunks[b"IDAT"])


@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
def test_png_rows_round_trip(shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(27).integers(0, 256, size=shape, dtype=np.uint8)
    width, height, color, raw = _decode_png(encode_png(pixels))
    assert (height, width, color) == (shape[0], shape[1], 2 if len(shape) == 3 else 0)
    stride = 1 + pixels[0].size
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(row[0] == 0 for row in rows)
    assert b"".join(row[1:] for row in rows) == pixels.tobytes()


def test_display_scaling_stretches_inverts_monochrome1_and_shrinks() -> None:
    ramp = np.arange(1000, 1000 + 700 * 10, dtype=np.uint16).reshape(700, 10)
    shown = to_display(ramp, "MONOCHROME2")
    assert shown.shape == (234, 4) and shown.dtype == np.uint8  # every third pixel
    assert (shown.min(), shown.max()) == (0, 255)
    assert to_display(ramp, "MONOCHROME1")[0, 0] == 255
