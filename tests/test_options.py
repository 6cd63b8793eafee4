"""AlignerOptions: one set of fields (flags, YAML keys, help) and one way to build an Aligner,
inherited by the correct, serve, demo, generate and eval configs.

Everything runs against the real CLI parser, real YAML files, the embedded demo corrector and a
real OpenAI-protocol HTTP server (tests/fake_openai.py) — nothing of the project is mocked.
"""
from __future__ import annotations

import dataclasses
import json

import pytest

from aligner import cli
from aligner.adapters.base import RetryPolicy
from aligner.contracts.config_parser import build_config
from aligner.core.commands import CorrectConfig
from aligner.demo.page import DemoConfig
from aligner.contracts.errors import ConfigError
from aligner.eval.config import EvalConfig
from aligner.generate.commands import GenerateConfig
from aligner.core.options import AlignerOptions, BatchOptions
from aligner.serve.config import ServeConfig
from aligner.contracts.templates import PAPER_DECODING

SHARED = [f.name for f in dataclasses.fields(AlignerOptions)]
CONFIGS = {"correct": CorrectConfig, "serve": ServeConfig, "demo": DemoConfig, "generate": GenerateConfig,
           "eval": EvalConfig}


def test_the_shared_fields_are_the_ones_the_issue_names():
    assert SHARED == ["upstream", "upstream_model", "corrector", "template", "max_new_tokens", "device",
                      "upstream_retries", "upstream_timeout", "objectives", "context", "gate", "gate_threshold",
                      "gate_min_severity", "gate_on_error"]
    assert [f.name for f in dataclasses.fields(BatchOptions)] == SHARED + ["batch_size", "concurrency", "batch_invariant"]


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_every_config_inherits_the_shared_fields(command):
    cls = CONFIGS[command]
    assert issubclass(cls, AlignerOptions)
    names = [f.name for f in dataclasses.fields(cls)]
    assert names[:len(SHARED)] == SHARED  # inherited, so in the base's order, each once
    assert len(names) == len(set(names))


def test_each_command_keeps_its_own_defaults():
    serve, demo, correct = ServeConfig(), DemoConfig(), CorrectConfig()
    assert (serve.max_new_tokens, serve.upstream_retries, serve.upstream_timeout) == (512, 2, 60.0)
    assert serve.decoding() == {"max_new_tokens": 512, "cap_to_answer": True}
    assert demo.max_new_tokens == 256 and demo.decoding() == {"max_new_tokens": 256}
    assert correct.max_new_tokens is None and correct.decoding() is None
    assert (correct.batch_size, correct.concurrency) == (8, 8)
    assert correct.retry_policy() is None  # no retry flag given: the upstream keeps its own policy
    assert EvalConfig(paper_decoding=True, max_new_tokens=64).decoding() == {**PAPER_DECODING, "max_new_tokens": 64}
    assert EvalConfig().decoding() is None


def test_the_retry_help_states_the_upstreams_own_defaults():
    """The help of --upstream-retries/--upstream-timeout quotes RetryPolicy's defaults: keep them equal."""
    policy = RetryPolicy()
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(AlignerOptions)}
    assert f"({policy.max_retries})" in helps["upstream_retries"]
    assert f"({policy.timeout:g})" in helps["upstream_timeout"]


@pytest.mark.parametrize("command", ["correct", "serve", "demo", "generate", "eval"])
def test_help_lists_the_shared_flags(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for name in SHARED:
        assert f"--{name.replace('_', '-')} " in text, name
    # the help text is the field's (one place for it), and per-command defaults are shown
    assert "who answers" in text or "extra upstream" in text
    if command == "serve":
        assert "(default: 512)" in text and "(default: 2)" in text and "(default: 60.0)" in text


def _parse(argv: list[str]):
    return cli.build_parser().parse_args(argv)


def _describe(aligner) -> dict:
    """What an Aligner was built from, as values a test can compare."""
    up = aligner.upstream
    return {"corrector": aligner.corrector.name, "template": aligner.corrector.template.name,
            "decoding": aligner.corrector.decoding.to_dict(), "batch_size": aligner.batch_size,
            "upstream": None if up is None else (type(up).__name__, up.name, up.model, up.max_concurrency,
                                                  up.retry.max_retries, up.retry.timeout)}


SHARED_FLAGS = ["--upstream", "{url}", "--upstream-model", "fake-model", "--template", "aligner-v1.0",
                "--max-new-tokens", "24", "--device", "cpu", "--upstream-retries", "1", "--upstream-timeout", "7.5"]
SHARED_YAML = "upstream: {url}\nupstream_model: fake-model\ntemplate: aligner-v1.0\nmax-new-tokens: 24\n" \
              "device: cpu\nupstream_retries: 1\nupstream-timeout: 7.5\n"


@pytest.mark.parametrize("command", ["correct", "serve", "demo", "generate", "eval"])
def test_a_yaml_file_with_the_shared_keys_builds_the_same_aligner_as_the_flags(command, fake, tmp_path):
    cls = CONFIGS[command]
    flags = [a.format(url=fake.base_url) for a in SHARED_FLAGS]
    yaml_file = tmp_path / "options.yaml"
    yaml_file.write_text(SHARED_YAML.format(url=fake.base_url))
    from_flags = build_config(cls, _parse([command, *flags]))
    args = _parse([command, "--config", str(yaml_file)])
    from_yaml = build_config(cls, args, args.config)
    assert from_flags == from_yaml
    assert (from_yaml.upstream, from_yaml.max_new_tokens, from_yaml.upstream_retries,
            from_yaml.upstream_timeout) == (fake.base_url, 24, 1, 7.5)

    with_upstream = command != "demo"  # create_demo builds its Aligner with upstream=False
    a, b = from_flags.build(upstream=with_upstream), from_yaml.build(upstream=with_upstream)
    assert _describe(a) == _describe(b)
    built = _describe(b)
    assert built["template"] == "aligner-v1.0" and built["decoding"]["max_new_tokens"] == 24
    if command == "demo":  # the demo offers its upstream beside the Aligner, built with the same options
        assert built["upstream"] is None
        up = from_yaml.build_upstream()
        assert (up.model, up.retry.max_retries, up.retry.timeout) == ("fake-model", 1, 7.5)
    else:
        kind, _, model, _, retries, timeout = built["upstream"]
        assert (kind, model, retries, timeout) == ("OpenAICompatibleUpstream", "fake-model", 1, 7.5)


def test_batch_options_reach_the_aligner_and_its_upstream(fake):
    aligner = GenerateConfig(upstream=fake.base_url, upstream_model="m", concurrency=3, batch_size=5,
                             requests_per_minute=600).build()
    assert aligner.batch_size == 5 and aligner.upstream.max_concurrency == 3
    assert aligner.upstream.rate_limiter is not None
    # correct/serve/demo without retry flags: the upstream's own default policy, as before
    assert CorrectConfig(upstream=fake.base_url, upstream_model="m").build().upstream.retry == RetryPolicy()


def test_serve_retry_settings_are_in_the_upstream_it_builds(fake):
    """The server's fail-fast policy is passed to the upstream's constructor, not patched on later."""
    from aligner.serve.app import create_app

    app = create_app(ServeConfig(upstream=fake.base_url, upstream_model="m", upstream_retries=0,
                                 upstream_timeout=3.0))
    retry = app.state.aligner.aligner.upstream.retry
    assert (retry.max_retries, retry.timeout) == (0, 3.0)
    assert retry.initial_backoff == RetryPolicy().initial_backoff  # the rest of the policy is the default


def _correct(url: str, *extra: str) -> list[str]:
    return ["correct", "How do I bake bread?", "--upstream", url, "--upstream-model", "m", "--json", *extra]


def test_upstream_retries_flag_decides_whether_a_failing_call_is_retried(fake, capsys):
    """Retry settings reach the upstream's requests: with 0 retries one 503 fails the command,
    with 1 the second attempt answers."""
    fake.responder = lambda req: "Mix flour, water and yeast, then bake it."
    before = fake.count("/v1/chat/completions")
    fake.fail_next(503, times=1)
    assert cli.main(_correct(fake.base_url, "--upstream-retries", "0")) == 2
    assert "503" in capsys.readouterr().err
    assert fake.count("/v1/chat/completions") - before == 1

    before = fake.count("/v1/chat/completions")
    fake.fail_next(503, times=1)
    assert cli.main(_correct(fake.base_url, "--upstream-retries", "1")) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["answer"] == "Mix flour, water and yeast, then bake it."
    assert fake.count("/v1/chat/completions") - before == 2


@pytest.mark.parametrize("field,value", [("upstream_retries", -1), ("upstream_retries", 1.5),
                                         ("upstream_timeout", 0), ("upstream_timeout", "soon")])
def test_bad_retry_settings_name_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        CorrectConfig(**{field: value})
    assert err.value.field == field


def test_train_cli_still_rejects_a_bad_option_before_loading_anything(tmp_path, capsys):
    """``aligner train`` validated its config twice (the command, then train_corrector); now only
    train_corrector does, first thing: the CLI error is the same one line naming the option."""
    rc = cli.main(["train", "--data", str(tmp_path / "qac.jsonl"), "--output-dir", str(tmp_path / "o"),
                   "--base-model", "m", "--learning-rate", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "learning_rate: must be positive, got 0.0." in err and "Fix:" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["correct", "generate", "eval"])
def test_batch_invariant_flag_and_key_reach_the_corrector_beside_the_commands_own_decoding(command, fake, tmp_path):
    """``--batch-invariant`` (issue 21 item 9) is added to whatever decoding the command chose (eval's
    paper settings included), from a flag or a YAML key alike; serve and demo do not offer it."""
    cls = CONFIGS[command]
    extra = ["--paper-decoding"] if command == "eval" else []
    yaml_file = tmp_path / "options.yaml"
    yaml_file.write_text(f"upstream: {fake.base_url}\nupstream_model: fake-model\nmax_new_tokens: 24\nbatch_invariant: true\n")
    from_flags = build_config(cls, _parse([command, "--upstream", fake.base_url, "--upstream-model", "fake-model",
                                           "--max-new-tokens", "24", "--batch-invariant", *extra]))
    args = _parse([command, "--config", str(yaml_file), *extra])
    for config in (from_flags, build_config(cls, args, args.config)):
        decoding = config.build().corrector.decoding
        assert decoding.batch_invariant is True and decoding.max_new_tokens == 24
        if command == "eval":
            assert (decoding.temperature, decoding.top_p, decoding.top_k) == \
                (PAPER_DECODING["temperature"], PAPER_DECODING["top_p"], PAPER_DECODING["top_k"])
    plain = build_config(cls, _parse([command, "--upstream", fake.base_url, "--upstream-model", "fake-model"]))
    assert plain.build().corrector.decoding.batch_invariant is False
    for other in ("serve", "demo"):
        with pytest.raises(SystemExit):
            _parse([other, "--batch-invariant"])
