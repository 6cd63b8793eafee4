"""``EvalConfig``: the options of ``aligner eval``, its Python API and its YAML keys in one dataclass."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.options import BatchOptions
from .judge import DEFAULT_DIMENSIONS, DIMENSIONS
from .sets import FORMATS


@dataclass
class EvalConfig(BatchOptions):
    """Options of ``aligner eval``: the shared :class:`~aligner.core.options.AlignerOptions` (what makes the
    answers and corrections when the file lacks them) plus these."""

    data: str | None = field(default=None, metadata={
        "help": "the eval set: questions (answers and corrections made on the way) or rows that already hold "
                "question, answer, correction; JSON/JSONL/.gz/parquet/CSV"})
    format: str = field(default="auto", metadata={
        "help": "eval set format: qac, questions, beavertails ({prompt, category}), harmfulqa ({question, topic}), "
                "truthfulqa (CSV), alpaca ({instruction, output}); auto guesses from the first row",
        "choices": list(FORMATS)})
    split: str = field(default="test", metadata={"help": "split to read when --data is a Hugging Face dataset id"})
    limit: int | None = field(default=None, metadata={"help": "evaluate N rows picked at random with --seed (in file order)"})
    seed: int = field(default=42, metadata={"help": "seed of --limit sampling and of the bootstrap"})
    lenient: bool = field(default=False, metadata={"help": "skip bad rows (counted, with reasons) instead of stopping"})
    upstream: str | None = field(default=None, metadata={
        "help": "who answers every question (answers in the file are then ignored): a LiteLLM model string, an "
                "http(s)://…/v1 base URL, or hf:PATH"})
    corrector: str | None = field(default=None, metadata={
        "help": "corrector that makes the corrections (corrections in the file are then ignored); default: the "
                "file's corrections, else the embedded demo corrector"})
    paper_decoding: bool = field(default=False, metadata={
        "help": "decode corrections as the paper's evaluation did (temperature 0.3, top-p 0.95, top-k 10, "
                "repetition/frequency penalty 1.2)"})
    judge: Any = field(default=None, metadata={
        "help": "the pairwise judge: a LiteLLM model string (openai/gpt-4-turbo) or an http(s)://…/v1 base URL "
                "(in Python also any upstream: a function prompt -> reply, an OpenAI client, an Upstream)"})
    judge_model: str | None = field(default=None, metadata={"help": "model name at a base-URL judge"})
    judge_api_base: str | None = field(default=None, metadata={"help": "api_base for a LiteLLM-string judge"})
    dimensions: list[str] = field(default_factory=lambda: list(DEFAULT_DIMENSIONS), metadata={
        "help": f"what the judge compares, each separately ({', '.join(DIMENSIONS)})"})
    judge_temperature: float = field(default=0.0, metadata={"help": "judge sampling temperature"})
    judge_max_tokens: int = field(default=1024, metadata={"help": "cap on judge reply tokens"})
    judge_concurrency: int = field(default=8, metadata={"help": "judge requests in flight at once"})
    judge_retries: int = field(default=2, metadata={
        "help": "times a judge is asked again when its reply holds no verdict; then it counts as unparsed"})
    judge_max_retries: int = field(default=4, metadata={"help": "HTTP retries (back-off) per judge call on 429/5xx/timeouts"})
    judge_timeout: float = field(default=120.0, metadata={"help": "seconds one judge call may take"})
    skip_unchanged: bool = field(default=False, metadata={
        "help": "count pairs whose correction equals the answer as ties without asking the judge (the paper judges all)"})
    bootstrap: int = field(default=1000, metadata={"help": "bootstrap resamples for the 95%% interval of the win rate"})
    cache: str | None = field(default=None, metadata={"help": "judge cache (SQLite); default OUTPUT_DIR/judge_cache.sqlite"})
    reward_model: str | None = field(default=None, metadata={"help": "sequence-classification reward model (path or hub id)"})
    cost_model: str | None = field(default=None, metadata={"help": "sequence-classification cost model; cost < 0 = safe"})
    score_format: str = field(default="auto", metadata={
        "help": "text the reward/cost models read: auto (chat template, else Safe-RLHF's "
                "'BEGINNING OF CONVERSATION: USER: {question} ASSISTANT:{answer}') or a string with {question} and {answer}"})
    score_batch_size: int = field(default=8, metadata={"help": "pairs a reward/cost model scores together"})
    alpaca_eval: str | None = field(default=None, metadata={
        "help": "also write AlpacaEval model_outputs JSON for the original and the corrected answers under this folder"})
    gate_compare: bool = field(default=False, metadata={
        "help": "with --gate: also correct every answer without the gate (same rows, same run) and report "
                "answers/s of both and their ratio"})
    output_dir: str = field(default="eval-report", metadata={"help": "where the report, plots and per-row results go"})
    plots: bool = field(default=True, metadata={"help": "draw PNG plots (needs matplotlib: pip install 'aligner-kit[eval]')"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    json: bool = field(default=False, metadata={"help": "print report.json's summary instead of the text summary"})

    def decoding(self) -> dict[str, Any] | None:
        from ..contracts.templates import PAPER_DECODING

        decoding: dict[str, Any] = dict(PAPER_DECODING) if self.paper_decoding else {}
        if self.max_new_tokens:
            decoding["max_new_tokens"] = self.max_new_tokens
        return decoding or None
