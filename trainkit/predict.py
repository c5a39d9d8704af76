"""`trainkit generate`: every prompt of a dataset answered by a run's model, one output record per input record with
its source line, the reference answer and the prediction, so answers can be read (or scored) against the data.

The dataset is read by datakit (any format and container the audit reads); records that cannot be read or rendered
are named by file:line and left out, never a crash. The output is written whole or not at all.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.generate import InferenceError, Prompt, Sampling, generate_answers, load_for_inference, prompt_ids, prompt_of
from trainkit.templates import TemplateError


@dataclass
class Skipped:
    source: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.why}"


@dataclass
class GenerateResult:
    output: Path
    written: int
    seconds: float
    answers_with: str
    over_length: int  # prompts longer than the run's max_length: lengths the adapter never trained on
    max_length: int
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the reader noticed about the file (BOM, unclosed array, ...)

    @property
    def records_per_s(self) -> float:
        return self.written / max(self.seconds, 1e-9)


def unreadable(ds) -> list[Skipped]:
    """Records datakit could not read or match to a format, each with the reader's own reason."""
    import polars as pl

    from schemas.findings import with_messages

    bad = ds.frame.filter(~pl.col("valid")).select("id", "source", "line")
    reasons = {}
    errors = with_messages(ds.read_findings).filter(pl.col("severity") == "error")
    for f in errors.select("record_id", "message").iter_rows():
        reasons.setdefault(f[0], f[1])
    return [Skipped(src, line, reasons.get(rid, "not a readable record")) for rid, src, line in bad.iter_rows()]


def renderable(rows: list[dict], inf) -> tuple[list[tuple[dict, object, str | None]], list[Skipped]]:
    """(row, prompt, reference) for every row the run's template can render with a prompt to answer; the others
    skipped with the reason (a template refusing a role or an odd turn order is a data problem, as in training)."""
    from trainkit.generate import prompt_segments

    keep, skipped = [], []
    for row in rows:
        prompt, reference = prompt_of(row)
        if not any(m["role"] != "system" for m in prompt.messages):
            skipped.append(Skipped(row["source"], row["line"], "no prompt before its answer: nothing to answer"))
            continue
        try:
            prompt_segments(prompt, inf.template, inf.tokenizer)
        except TemplateError:
            raise
        except Exception as e:  # noqa: BLE001  see the docstring
            skipped.append(Skipped(row["source"], row["line"], f"the {inf.template} template cannot render it "
                                                               f"({type(e).__name__}: {e})"))
            continue
        keep.append((row, prompt, reference))
    return keep, skipped


def questions(row: dict, prompt: Prompt) -> list[Prompt]:
    """The prompts to answer in turn: one, or for a record of questions only (`turns`, as MT-bench's), each question
    after the earlier ones, whose answers `answer_in_turns` fills in."""
    if row.get("format") != "prompts" or len(prompt.messages) < 2:
        return [prompt]
    return [Prompt(prompt.messages[: i + 1]) for i in range(len(prompt.messages))]


def answer_in_turns(inf, jobs: list[tuple[dict, Prompt]], options: dict) -> list[list[str]]:
    """Every record's answers, turn by turn: round k answers the k-th question of every record that has one, after
    its earlier questions and the model's own answers to them (all records of a round batched together)."""
    asked = [questions(row, prompt) for row, prompt in jobs]
    answers: list[list[str]] = [[] for _ in jobs]
    for k in range(max((len(q) for q in asked), default=0)):
        now = [i for i, q in enumerate(asked) if len(q) > k]
        prompts = []
        for i in now:
            messages = list(asked[i][k].messages)
            for j, said in enumerate(answers[i]):  # the model's answers go after the questions they answer
                messages.insert(2 * j + 1, {"role": "assistant", "content": said})
            prompts.append(Prompt(messages, asked[i][k].instruction, asked[i][k].input))
        for i, answer in zip(now, generate_answers(inf, prompts, **options)):
            answers[i].append(answer)
    return answers


def generate(run_dir: str | Path, data: str | Path, output: str | Path, *, max_new_tokens: int = 256, temperature: float = 0.0,
             top_p: float = 1.0, seed: int = 0, batch_size: int = 8, merged: str | Path | None = None, base: bool = False,
             label_field: str | None = None, trust_remote_code: bool = False, allow_pickle_weights: bool = False,
             progress: bool = True) -> GenerateResult:
    """Answer every prompt of DATA with the model of RUN_DIR and write OUTPUT (.jsonl, .json or .parquet, + .gz).

    Each output record: source, line, label (the `label_field` value, as training's --label-field), prompt (messages), reference (the record's last answer, or None),
    prediction, and the settings that produced it; a record of several questions only (MT-bench's `turns`) is
    answered question by question, and also gets `answers`, one per question."""
    from datakit.io.lock import output_lock
    from datakit.io.write import container_of, record_writer, refuse_overwrite
    from datakit.normalise import load

    run_dir, data, output = Path(run_dir), Path(data), Path(output)
    Sampling(max_new_tokens, temperature, top_p).check()  # before minutes of loading
    if batch_size < 1:
        raise InferenceError(f"--batch-size {batch_size}: must be at least 1.")
    refuse_overwrite("trainkit generate", [data, run_dir / "run.json"], [output])
    ds = load(data, label_field)
    skipped = unreadable(ds)
    inf = load_for_inference(run_dir, merged=Path(merged) if merged else None, base=base,
                             trust_remote_code=trust_remote_code, allow_pickle_weights=allow_pickle_weights)
    todo, not_rendered = renderable(ds.valid.to_dicts(), inf)
    skipped = sorted(skipped + not_rendered, key=lambda s: s.line or 0)
    over = sum(len(ids) > inf.max_length for ids in prompt_ids(inf, [p for _, p, _ in todo]))
    settings = {"run": str(run_dir), "model": inf.answers_with, "template": inf.template, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "top_p": top_p, "seed": seed, "batch_size": batch_size}
    options = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
               "batch_size": batch_size, "progress": progress}
    with output_lock("trainkit generate", [output]):
        started = time.perf_counter()
        answers = answer_in_turns(inf, [(row, prompt) for row, prompt, _ in todo], options)
        seconds = time.perf_counter() - started
        with record_writer(output, *container_of(output)) as sink:
            sink.write({"source": row["source"], "line": row["line"], "label": row["label"], "prompt": prompt.messages,
                        "reference": reference, "prediction": turns[-1], "settings": settings}
                       | ({"answers": turns} if len(turns) > 1 else {})
                       for (row, prompt, reference), turns in zip(todo, answers))
    return GenerateResult(output=output, written=len(answers), seconds=seconds, answers_with=inf.answers_with,
                          over_length=over, max_length=inf.max_length, skipped=skipped,
                          notes=[f"{n['source']}:{n['line']}: {n['message']}" for n in ds.notes if n["severity"] == "error"])
