"""Release numbers compare as numbers, and text that is none is refused with a clear error."""
import pytest

from napari_risnet.releases import release_key


def test_release_numbers_compare_as_numbers():
    assert release_key("0.10.0") > release_key("0.9.0")
    assert release_key("v0.14.0+g1234") == (0, 14, 0)
    assert sorted(["0.15.0", "0.5.0", "0.13.0"], key=release_key) == ["0.5.0", "0.13.0", "0.15.0"]


def test_text_that_is_no_release_is_refused():
    with pytest.raises(ValueError, match="not a release number"):
        release_key("latest")
