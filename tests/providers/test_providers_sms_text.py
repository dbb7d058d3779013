import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.sms_text import count_segments, is_gsm7, to_gsm7

SPEC_EXAMPLE = (
    "RDV PMI mar. 24/11 14h30, MDS Calais, 12 rue X. "
    "Annuler: https://h/c/Ab3dE9xQ2k ou repondez ANNULER"
)


def test_spec_example_fits_one_gsm7_segment():
    assert to_gsm7(SPEC_EXAMPLE) == SPEC_EXAMPLE
    assert count_segments(SPEC_EXAMPLE) == ("GSM-7", 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Noël à l'école, forêt, île, hôtel, où, août",
            "Noel à l'école, foret, ile, hotel, où, aout",
        ),
        ("ça, garçon, Ça", "ca, garcon, Ça"),
        ("œuvre, Œdipe, cœur", "oeuvre, OEdipe, coeur"),
        ("l’heure ‘x’ ‚y‛", "l'heure 'x' 'y'"),
        ("“oui” „non”", '"oui" "non"'),
        ("« Annuler »", '" Annuler "'),
        ("9h–10h — fin", "9h-10h - fin"),
        ("Attendez…", "Attendez..."),
        ("14\u00a0h\u202f30 ;", "14 h 30 ;"),
        ("n° 12", "no 12"),
        ("usager·e", "usager.e"),
        ("Ñandú ÄÖÜ äöü ß Æ æ Ø ø Å å É è é ù ì ò à", "Ñandu ÄÖÜ äöü ß Æ æ Ø ø Å å É è é ù ì ò à"),
        ("âêîôû ÂÊÎÔÛ ëïÿ ËÏ", "aeiou AEIOU eiy EI"),
        ("prix: 5€ {x} [y] ~ | ^ \\", "prix: 5€ {x} [y] ~ | ^ \\"),
        ("RDV 😀 demain", "RDV 😀 demain"),
        ("東京", "東京"),
        ("", ""),
    ],
)
def test_to_gsm7(text, expected):
    assert to_gsm7(text) == expected


def test_is_gsm7():
    assert is_gsm7(string.ascii_letters + string.digits + " @£$¥\n\r")
    assert is_gsm7("€[]{}")
    assert is_gsm7("ΔΦΓΛΩΠΨΣΘΞ")
    assert not is_gsm7("ê")
    assert not is_gsm7("ç")
    assert not is_gsm7("`")
    assert not is_gsm7("😀")
    assert not is_gsm7("\x1b")  # the escape itself is not text
    assert is_gsm7("")


def test_empty_text_is_one_segment():
    assert count_segments("") == ("GSM-7", 1)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_boundaries(length, segments):
    assert count_segments("a" * length) == ("GSM-7", segments)


def test_extension_characters_count_two_septets():
    assert count_segments("€" * 80) == ("GSM-7", 1)
    assert count_segments("€" * 80 + "a") == ("GSM-7", 2)
    assert count_segments("a" * 159 + "€") == ("GSM-7", 2)
    assert count_segments("a" * 158 + "€") == ("GSM-7", 1)


def test_extension_character_is_never_split_across_segments():
    # 152 septets then a 2-septet euro: it cannot straddle the 153 boundary.
    assert count_segments("a" * 152 + "€" + "a" * 152) == ("GSM-7", 3)
    # Same total (306 septets) without a straddle fits in 2.
    assert count_segments("a" * 151 + "€" + "a" * 153) == ("GSM-7", 2)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("😀" + "a" * 68, 1),  # 70 UTF-16 units
        ("😀" + "a" * 69, 2),  # 71
        ("😀" + "a" * 132, 2),  # 134 = 2 x 67
        ("😀" + "a" * 133, 3),  # 135
        ("東" * 70, 1),
        ("東" * 71, 2),
    ],
)
def test_ucs2_boundaries(text, segments):
    assert count_segments(text) == ("UCS-2", segments)


def test_surrogate_pair_is_never_split_across_segments():
    # 66 units, then a 2-unit emoji that would straddle 67, then 66 units.
    assert count_segments("a" * 66 + "😀" + "a" * 66) == ("UCS-2", 3)
    assert count_segments("a" * 65 + "😀" + "a" * 67) == ("UCS-2", 2)


def test_a_single_non_gsm_char_forces_ucs2():
    assert count_segments("a" * 100) == ("GSM-7", 1)
    assert count_segments("a" * 99 + "ê") == ("UCS-2", 2)
    assert count_segments(to_gsm7("a" * 99 + "ê")) == ("GSM-7", 1)


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFF)))
def test_latin1_text_always_becomes_gsm7(text):
    assert is_gsm7(to_gsm7(text))


@given(st.text())
def test_to_gsm7_is_idempotent_and_keeps_gsm7_text(text):
    once = to_gsm7(text)
    assert to_gsm7(once) == once
    if is_gsm7(text):
        assert once == text
