"""GGUF export and the llama.cpp backend (issue 27), end to end with the real llama.cpp.

Correctors are converted by llama.cpp's own converter (``aligner to-gguf``) and decoded by
llama-cpp-python; nothing is faked but the upstream, a real HTTP server on 127.0.0.1. Skipped
without the ``gguf`` extra (``.ci/run`` installs it, so CI runs these).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the gguf extra is not installed: pip install 'aligner-kit[gguf]' "
                                        "(.ci/run installs it)")
gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed: pip install 'aligner-kit[gguf]'")

from aligner import Aligner  # noqa: E402
from aligner.correctors import demo_corrector_path, load_corrector  # noqa: E402
from aligner.correctors.llamacpp import GGUFCorrector  # noqa: E402
from aligner.contracts.errors import ConfigError, CorrectorError  # noqa: E402
from aligner.gguf import to_gguf  # noqa: E402
from aligner.correctors.gguf_format import read_fields  # noqa: E402
from fixed_tiny import fixed_tiny  # noqa: E402

GREEDY = {"max_new_tokens": 96}
#: greedy without the demo corrector's strict edit checks: a stream cannot take back what it showed, so
#: an edit the checks decline at the end differs from the batch answer (tests/test_edit_checks.py has them)
RAW = {**GREEDY, "edit_checks": "off"}
#: demo inputs with edits the demo corrector makes (contacts redacted, a sum fixed) and copies.
HAND = [
    ("How can I get in touch with Maria?",
     "You can email Maria at maria.lopez@example.com. Call Maria on +1 555 010 2345 after six."),
    ("What is 17 plus 25?", "17 plus 25 is 43."),
    ("What do spiders eat?", "Most spiders eat insects, which they catch in webs or by hunting."),
    ("Who should I ask about the invoice?", "Ask Tom Becker, tom.becker@example.org, he handles invoices."),
]


def pairs(n: int = 16) -> list[tuple[str, str]]:
    from aligner.data.synthetic import generate

    rows = generate(n, seed=4242, mix={"identity": 0.4, "redact": 0.3, "arithmetic": 0.3})
    return HAND + [(r.question, r.answer) for r in rows]


def aligner_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aligner", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def demo_f32(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "demo-f32.gguf"
    done = to_gguf(None, out, type="f32")
    assert done.path == str(out) and done.type == "f32"
    return out


@pytest.fixture(scope="module")
def demo_gguf(demo_f32) -> GGUFCorrector:
    return GGUFCorrector(str(demo_f32), threads=1)


@pytest.fixture(scope="module")
def demo_torch() -> Aligner:
    return Aligner(corrector=str(demo_corrector_path()), device="cpu")


# -- conversion -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A tiny Llama corrector (varied text) converted through the CLI: (checkpoint, file, report)."""
    root = tmp_path_factory.mktemp("tiny")
    src = fixed_tiny(root / "tiny", init_scale=10.0)
    out = root / "tiny-f32.gguf"
    done = aligner_cli("to-gguf", str(src), str(out), "--type", "f32", "--json")
    assert done.returncode == 0, done.stderr
    return src, out, json.loads(done.stdout)


def test_tiny_llama_corrector_converts_through_the_cli_and_llama_cpp_loads_it(tiny):
    from transformers import AutoTokenizer

    src, out, report = tiny
    # a tokenizer trained here: llama.cpp's converter does not know it, the corpus check mapped it
    assert report["recognized"] is False and report["pre_tokenizer"] and report["texts_checked"] > 200
    assert report["architecture"] == "LlamaForCausalLM" and report["bytes"] == out.stat().st_size
    fields = read_fields(out)
    assert fields["aligner.format"] == 1 and fields["aligner.template"] == "aligner-v1.0"
    assert fields["aligner.type"] == "f32" and fields["general.architecture"] == "llama"
    assert fields["tokenizer.ggml.add_bos_token"] is True
    assert json.loads(fields["aligner.config"]) == {"template": "aligner-v1.0"}

    corr = load_corrector(str(out))  # the registry sends a .gguf spec to the llama.cpp backend
    assert isinstance(corr, GGUFCorrector) and corr.template.name == "aligner-v1.0"
    hf = AutoTokenizer.from_pretrained(src)
    for q, a in pairs(6):
        prompt = corr.render(q, a)
        assert corr._tokenize(prompt) == hf(prompt)["input_ids"]
    assert corr.generate([corr.render("Hi?", "Hello there.")], corr._decoding({"max_new_tokens": 8}))[0]


def test_demo_corrector_converts_with_its_pre_tokenizer_mapped(demo_f32, demo_gguf):
    from transformers import AutoTokenizer

    fields = read_fields(demo_f32)
    config = json.loads(fields["aligner.config"])
    shipped = json.loads((demo_corrector_path() / "aligner_config.json").read_text())
    assert config["demo"] is True and config["template"] == "aligner-v1.0"
    assert config["stage"] == shipped["stage"] and config["global_step"] == shipped["global_step"]  # the shipped one
    # digits one by one, then GPT-2's regex: llama.cpp has that split under another model's name
    assert fields["tokenizer.ggml.pre"] not in ("", "default")
    hf = AutoTokenizer.from_pretrained(demo_corrector_path())
    text = "Call +1 555 010 2345 or 0.75 of 1,000 I'll say it's   spaced\tout 🦙"
    assert demo_gguf._tokenize(text, bos=False) == hf.encode(text, add_special_tokens=False)
    assert demo_gguf.is_demo and demo_gguf.eos_token == "</s>"


def test_quantized_types_are_smaller_and_load(tmp_path, demo_f32):
    sizes = {"f32": demo_f32.stat().st_size}
    for kind in ("q8_0", "q4_k_m"):
        out = tmp_path / f"demo-{kind}.gguf"
        done = to_gguf(None, out, type=kind)
        sizes[kind] = done.bytes
        assert read_fields(out)["aligner.type"] == kind
        corr = GGUFCorrector(str(out), threads=1)
        assert corr.correct("What do spiders eat?", "Spiders eat insects.", decoding=GREEDY)
    assert sizes["q4_k_m"] < sizes["q8_0"] < sizes["f32"] / 3


# -- the backend ------------------------------------------------------------------------------------
def test_f32_gives_pytorchs_greedy_corrections(demo_gguf, demo_torch):
    fixed = pairs()
    want = [c.correction for c in demo_torch.correct_batch(*zip(*fixed), decoding=GREEDY, progress=False)]
    assert sum(w != a for w, (_, a) in zip(want, fixed)) >= 4  # the set has real edits, not only copies
    for decoding in (GREEDY, {**GREEDY, "copy_draft": False}, {**GREEDY, "prompt_lookup": 10}):
        got = demo_gguf.correct_batch(fixed, decoding=decoding)
        assert got == want, decoding
    # the Aligner API and the CLI take the file as --corrector
    assert Aligner(corrector=demo_gguf).correct(*fixed[0], decoding=GREEDY).correction == want[0]


def test_cli_correct_with_a_gguf_corrector(demo_f32, demo_torch):
    q, a = HAND[0]
    done = aligner_cli("correct", q, "--answer", a, "--corrector", str(demo_f32), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["correction"] == demo_torch.correct(q, a).correction


def test_streaming_reassembles_to_the_batch_correction(demo_gguf):
    for q, a in HAND[:2]:
        stream = demo_gguf.stream(q, a, decoding=RAW)
        pieces = list(stream)
        assert len(pieces) > 3
        assert "".join(pieces).strip() == demo_gguf.correct(q, a, decoding=RAW)
        assert stream.result.fallback_reason is None and stream.correction.correction == "".join(pieces).strip()


def test_an_over_long_answer_is_truncated_to_the_context(demo_gguf):
    answer = " ".join(f"Sentence {i} is fine." for i in range(400))  # ~2,400 tokens, context 512
    before = demo_gguf.truncations
    q, kept = demo_gguf.fit("What is this?", answer)
    assert demo_gguf.truncations == before + 1 and answer.startswith(kept) and len(kept) < len(answer) // 3
    assert len(demo_gguf._tokenize(demo_gguf.render("What is this?", kept))) <= demo_gguf.n_ctx // 2
    assert demo_gguf.correct("What is this?", answer, decoding=GREEDY)


async def test_async_stream_and_batch(demo_gguf):
    q, a = HAND[1]
    pieces = [p async for p in demo_gguf.astream(q, a, decoding=RAW)]
    assert "".join(pieces).strip() == (await demo_gguf.acorrect(q, a, decoding=RAW))


def test_sampling_varies_and_greedy_does_not(tiny):
    corr = GGUFCorrector(str(tiny[1]), threads=1)
    prompt = corr.render("Tell me something.", "Here is a long and winding answer about many things.")
    hot = corr._decoding({"do_sample": True, "temperature": 5.0, "top_p": 1.0, "max_new_tokens": 24})
    samples = {corr.generate([prompt], hot)[0] for _ in range(4)}
    assert len(samples) > 1 and all(samples)
    cold = corr._decoding({"max_new_tokens": 24})
    assert len({corr.generate([prompt], cold)[0] for _ in range(3)}) == 1


def test_a_looping_corrector_falls_back_to_the_answer(tmp_path):
    src = fixed_tiny(tmp_path / "loops", init_scale=1.0)  # an untrained model repeats one token
    out = tmp_path / "loops.gguf"
    to_gguf(src, out, type="f32")
    corr = GGUFCorrector(str(out), threads=1)
    answer = "The museum opens at nine and closes at five on weekdays."
    result = corr.correct_results([("When does it open?", answer)], decoding={"max_new_tokens": 400})[0]
    assert result.fallback_reason == "repetition" and result.text == answer
    assert result.stop_reason == "repetition"  # stopped while decoding, not at the token limit
    # a stream cannot take back what it showed: it stops where the guard tripped, and its result
    # (what a caller stores) is the answer, flagged
    stream = corr.stream("When does it open?", answer, decoding={"max_new_tokens": 400})
    shown = "".join(stream)
    assert len(shown) < 120 and stream.result.fallback_reason == "repetition" and stream.result.text == answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_concurrent_requests_through_aligner_serve(demo_f32, fake, demo_torch):
    import httpx
    import openai

    fake.responder = lambda req: ("Sure: write to " + req["messages"][-1]["content"].split()[-1].strip("?")
                                  + ".lee@example.com or call +1 555 010 77" + str(len(req["messages"][-1]["content"]))
                                  + ". Have a nice day.")
    questions = [f"How do I reach {name}?" for name in ("Ana", "Bo", "Cy", "Di", "Ed", "Flo")]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aligner", "serve", "--corrector", str(demo_f32),
                             "--upstream", fake.base_url, "--upstream-model", "fake-model", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ALIGNER_GGUF_CONTEXTS": "2", "ALIGNER_GGUF_THREADS": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "aligner serve did not start"
            time.sleep(0.3)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)

        def ask(i: int) -> str:
            messages = [{"role": "user", "content": questions[i]}]
            if i % 2:
                chunks = client.chat.completions.create(model="fake-model", messages=messages, stream=True)
                return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return client.chat.completions.create(model="fake-model", messages=messages).choices[0].message.content

        with concurrent.futures.ThreadPoolExecutor(len(questions)) as pool:
            got = list(pool.map(ask, range(len(questions))))
        health = httpx.get(base + "/health", timeout=5).json()
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    answers = [fake.responder({"messages": [{"role": "user", "content": q}]}) for q in questions]
    # streamed replies (odd i) show the correction as written (the strict edit checks judge it only at
    # the end, when it was shown); the others the checked correction, as the PyTorch corrector gives both
    want = ["".join(demo_torch.stream(q, a)).strip() if i % 2 else demo_torch.correct(q, a).correction
            for i, (q, a) in enumerate(zip(questions, answers))]
    assert [g.strip() for g in got] == [w.strip() for w in want]
    assert any(w != a for w, a in zip(want, answers))  # contacts were redacted, not only copied
    assert health["status"] == "ok" and health["corrector"] == str(demo_f32)


# -- bad input --------------------------------------------------------------------------------------
def test_an_encoder_decoder_corrector_is_refused(tiny_seq2seq_path, tmp_path):
    with pytest.raises(ConfigError, match="encoder-decoder") as err:
        to_gguf(tiny_seq2seq_path, tmp_path / "t5.gguf", type="f32")
    assert "causal" in str(err.value) and "T5" in str(err.value)
    done = aligner_cli("to-gguf", str(tiny_seq2seq_path), str(tmp_path / "t5.gguf"))
    assert done.returncode == 2 and "encoder-decoder" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "t5.gguf").exists()


def test_an_unknown_type_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown GGUF type 'q3'") as err:
        to_gguf(None, tmp_path / "x.gguf", type="q3")
    assert err.value.field == "type" and "q4_k_m" in str(err.value)
    done = aligner_cli("to-gguf", "demo", str(tmp_path / "x.gguf"), "--type", "q3")
    assert done.returncode == 2 and "--type" in done.stderr and "q8_0" in done.stderr
    with pytest.raises(ConfigError, match="--llama-cpp"):
        to_gguf(None, tmp_path / "x.gguf", type="f32", llama_cpp=tmp_path / "no-llama-cpp-here")


def test_a_gguf_file_that_is_not_a_corrector_needs_a_template(demo_f32, demo_gguf, tmp_path):
    from gguf.scripts.gguf_new_metadata import copy_with_new_metadata

    # the same model with the aligner.* keys removed, by the gguf package's own metadata tool
    reader = gguf.GGUFReader(demo_f32)
    plain = tmp_path / "plain-model.gguf"
    writer = gguf.GGUFWriter(plain, arch=reader.fields["general.architecture"].contents(),
                             endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, {}, [k for k in reader.fields if k.startswith("aligner.")])
    assert not any(k.startswith("aligner.") for k in read_fields(plain))
    with pytest.raises(ConfigError, match="no aligner.template") as err:
        GGUFCorrector(str(plain))
    assert "--template" in str(err.value) and err.value.field == "template"
    q, a = HAND[0]
    done = aligner_cli("correct", q, "--answer", a, "--corrector", str(plain))
    assert done.returncode == 2 and "--template aligner-v1.0" in done.stderr and "Traceback" not in done.stderr
    named = GGUFCorrector(str(plain), template="aligner-v1.0", threads=1)
    assert named.correct(q, a, decoding=GREEDY) == demo_gguf.correct(q, a, decoding=GREEDY)


def test_a_truncated_or_foreign_file_is_a_clear_error(demo_f32, tmp_path):
    data = demo_f32.read_bytes()
    for cut in (len(data) // 2, 4096):
        short = tmp_path / f"cut-{cut}.gguf"
        short.write_bytes(data[:cut])
        with pytest.raises(CorrectorError) as err:
            GGUFCorrector(str(short))
        assert "cut short" in str(err.value) or "truncated" in str(err.value)
        assert err.value.field == "corrector" and "aligner to-gguf" in str(err.value)
    foreign = tmp_path / "notes.gguf"
    foreign.write_text("these are notes, not a model")
    with pytest.raises(ConfigError, match="not a GGUF file"):
        GGUFCorrector(str(foreign))
    with pytest.raises(ConfigError, match="no such GGUF file"):
        load_corrector(str(tmp_path / "missing.gguf"))
