"""Build small models from a config, with a tokenizer trained locally by ``tokenizers``.

Tests, benchmarks, the embedded demo corrector and the demo gate all need real transformers models
without a hub download. They are saved with ``save_pretrained`` and loaded back through ``from_pretrained``, the
very path a hub id such as ``aligner/aligner-7b-v1.0`` takes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..correctors.checkpoint import save_corrector

SPECIAL = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, *, split_digits: bool = False) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` in seconds, as a ``PreTrainedTokenizerFast``.

    ``split_digits`` makes every digit its own token: plain BPE merges numbers inconsistently
    (``"40"`` as ``4``+``0`` but ``" 35"`` as one token), which a tiny model cannot do arithmetic on.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL["unk"]))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL["pad"], SPECIAL["unk"],
                                  SPECIAL["bos"], SPECIAL["eos"]],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id(SPECIAL["bos"])
    tok.post_processor = processors.TemplateProcessing(single=f"{SPECIAL['bos']} $A",
                                                       special_tokens=[(SPECIAL["bos"], bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL["bos"], eos_token=SPECIAL["eos"],
                                   pad_token=SPECIAL["pad"], unk_token=SPECIAL["unk"], model_max_length=1024)


def build_model(tokenizer: Any, kind: str = "causal", *, hidden_size: int = 64, layers: int = 2,
                heads: int = 4, intermediate_size: int | None = None, context: int = 1024,
                seed: int = 0, init_scale: float = 1.0) -> Any:
    """A randomly initialised Llama (``causal``) or T5 (``seq2seq``) sized by the arguments.

    ``init_scale`` multiplies the default init spread: an untrained model at scale 1 repeats one
    token for ever, at ~10 it writes varied (if meaningless) text, which makes tests of streaming,
    batching and parity actually discriminating.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id)
    if kind == "causal":
        cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
                          num_attention_heads=heads, num_key_value_heads=heads,
                          intermediate_size=intermediate_size or hidden_size * 4,
                          max_position_embeddings=context, tie_word_embeddings=True,
                          initializer_range=0.02 * init_scale, **ids)
        return LlamaForCausalLM(cfg)
    if kind == "seq2seq":
        cfg = T5Config(vocab_size=len(tokenizer), d_model=hidden_size, d_kv=hidden_size // heads,
                       d_ff=intermediate_size or hidden_size * 4, num_layers=layers, num_heads=heads,
                       decoder_start_token_id=tokenizer.pad_token_id,
                       initializer_factor=init_scale, **ids)
        return T5ForConditionalGeneration(cfg)
    raise ValueError(f"kind must be 'causal' or 'seq2seq', got {kind!r}")


def make_tiny_corrector(path: "str | Path", texts: Iterable[str], kind: str = "causal", *,
                        vocab_size: int = 512, template: str | None = None, **model_kw: Any) -> Path:
    """Tokenizer + random model + save, in one call (used by the tests and benchmarks)."""
    tok = train_tokenizer(texts, vocab_size=vocab_size)
    return save_corrector(build_model(tok, kind, **model_kw), tok, path, template=template)


def build_encoder(tokenizer: Any, *, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                  intermediate_size: int | None = None, context: int = 512, seed: int = 0) -> Any:
    """A randomly initialised BERT encoder sized by the arguments: a base for ``aligner train-gate``
    (which adds the classification head) in tests and the demo gate's rebuild."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=intermediate_size or hidden_size * 4,
                     max_position_embeddings=context, pad_token_id=tokenizer.pad_token_id, type_vocab_size=1)
    return BertModel(cfg)


def make_tiny_encoder(path: "str | Path", texts: Iterable[str], *, vocab_size: int = 512, **model_kw: Any) -> Path:
    """Tokenizer + random BERT encoder + save (a gate base for tests and the demo gate)."""
    tok = train_tokenizer(texts, vocab_size=vocab_size)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    build_encoder(tok, **model_kw).save_pretrained(out)
    tok.save_pretrained(out)
    return out
