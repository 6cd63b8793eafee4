"""The released models were trained on exact strings: each template is pinned byte for byte."""
import pytest

from aligner.contracts import templates
from aligner.contracts.errors import TemplateError
from aligner.contracts.templates import Template, get_template


def test_aligner_v1_is_the_default_and_matches_the_model_card():
    assert templates.DEFAULT_TEMPLATE == "aligner-v1.0"
    assert get_template().render("Q?", "A.") == (
        "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more helpful "
        "and harmless: Q? | A. ASSISTANT:")


def test_qac_matches_the_official_repository_byte_for_byte():
    s = get_template("qac").render("Q?", "A.")
    assert s == "BEGINNING OF CONVERSATION: USER: ##Question: Q?\n##Answer: A.\n##Correction:  ASSISTANT:"
    assert s.encode() == (b"BEGINNING OF CONVERSATION: USER: ##Question: Q?\n##Answer: A.\n"
                          b"##Correction:  ASSISTANT:")  # two spaces, none after ASSISTANT:


def test_empathy_and_metaaligner():
    assert get_template("empathy").render("Q", "A") == (
        "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more empathic "
        "and helpful: Q | A ASSISTANT:")
    assert get_template("metaaligner").render("Q", "A", aspects="harmlessness, helpfulness") == (
        "Edit the following Question-Answer pair to make it better considering these aspects: "
        "harmlessness, helpfulness | Context: Q | Answer: A | Edit: ")
    with pytest.raises(TemplateError, match="aspects"):
        get_template("metaaligner").render("Q", "A")


def test_values_are_inserted_verbatim_even_with_braces():
    assert "{answer} and {x}" in get_template("qac").render("{answer} and {x}", "a")


def test_user_template_string_and_errors():
    t = get_template("USER: {question} || {answer} ASSISTANT:")
    assert t.render("q", "a") == "USER: q || a ASSISTANT:"
    with pytest.raises(TemplateError, match=r"template.*no \{answer\} placeholder"):
        Template("bad", "USER: {question} ASSISTANT:")
    with pytest.raises(TemplateError, match="unknown template 'nope'.*aligner templates list"):
        get_template("nope")
    with pytest.raises(TemplateError, match="already|exists"):
        templates.register(Template("qac", "{question}{answer}"))


def test_parse_takes_text_after_marker_and_stops_at_eos():
    t = get_template("aligner-v1.0")
    full = t.render("Q", "A") + " Better answer.</s> junk"
    assert t.parse(full) == "Better answer."
    assert t.parse("  fixed text\nBEGINNING OF CONVERSATION: USER: more") == "fixed text"
    assert t.parse(" only new tokens <|endoftext|>") == "only new tokens"


def test_names_lists_every_registered_template():
    assert {"aligner-v1.0", "qac", "empathy", "metaaligner"} <= set(templates.names())
