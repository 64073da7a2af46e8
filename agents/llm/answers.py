"""What the models must answer, and a tolerant reader for what they actually answer.

`PlanAnswer` and `AnalysisAnswer` are the structured outputs (sent as `json_schema` where the
endpoint supports it). Where it does not, or where a model ignores it, `read_json` pulls the
object out of free text: the whole answer, a ```json block, or the first balanced `{...}`;
common synonyms for field names are accepted. `read_module` pulls a Python module out of
prose: a fenced block (the one defining `build_model` when there are several), an unfenced
module, or a module after a line of preamble.

Both return `(value, problem)`: `problem` is "" on success and otherwise one sentence the
model can act on (it is sent back verbatim). An object that does not parse is reported with
`json`'s complaint, the line and column in the answer, the text there, and a hint for the
usual causes (thousands separators, NaN, single quotes). Nothing here raises on bad input.
"""
from __future__ import annotations

import ast
import json
import re
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from evaluators.static_check import MAX_SOURCE_BYTES

T = TypeVar("T", bound=BaseModel)

REFUSAL = re.compile(r"\b(I'?m sorry|I am sorry|I can(?:no|')t (?:help|assist|do|comply|provide|write)|I am unable|"
                     r"I'?m unable|I won'?t|as an AI)\b", re.IGNORECASE)
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
CODE_START = re.compile(r"^(import |from |class |def |@|\"\"\"|'''|[A-Z_][A-Z0-9_]* = )")


class PlanAnswer(BaseModel):
    """The planner's proposal: one change to one parent."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    title: str = Field(validation_alias=AliasChoices("title", "name"))
    hypothesis: str = Field(validation_alias=AliasChoices("hypothesis", "motivation", "rationale"))
    change_kind: str = Field(validation_alias=AliasChoices("change_kind", "kind", "change_type", "category"))
    change: str = Field(validation_alias=AliasChoices("change", "detail", "description"))
    expected_effect: str = Field(validation_alias=AliasChoices("expected_effect", "expected", "prediction"))

    @field_validator("title", "hypothesis", "change", "expected_effect", "change_kind", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        if not isinstance(value, (str, int, float)) or not str(value).strip():
            raise ValueError("must be a non-empty string")
        return " ".join(str(value).split())

    @field_validator("change_kind")
    @classmethod
    def _slug(cls, value: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")[:40]
        if not slug:
            raise ValueError("must be a short snake_case word such as short_conv")
        return slug

    @field_validator("title")
    @classmethod
    def _short(cls, value: str) -> str:
        return value[:120]


class GeneValue(BaseModel):
    """One gene of the task's search space and its new value."""

    model_config = ConfigDict(extra="ignore")

    gene: str = Field(validation_alias=AliasChoices("gene", "name", "key"))
    value: str | int | float | bool


class SpacePlanAnswer(PlanAnswer):
    """A proposal where the task declares a search space: `space_change` names a change of the parent's genome
    (the lab renders its module), or is empty for a change in words that the coder writes."""

    space_change: list[GeneValue] = Field(default_factory=list)

    @field_validator("space_change", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        if isinstance(value, dict) and not {"gene", "name", "key"} & set(value):   # {"short_conv": 3}
            return [{"gene": k, "value": v} for k, v in value.items()]
        return [value] if isinstance(value, dict) else value


class Evidence(BaseModel):
    metric: str
    value: float


class FindingAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=10)
    kind: Literal["insight", "failure", "principle"]
    evidence: list[Evidence] = Field(default_factory=list)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("evidence", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, dict):             # {"accuracy": 0.5} is as good as [{"metric": ..., "value": ...}]
            return [{"metric": k, "value": v} for k, v in value.items() if isinstance(v, (int, float))]
        return value


class AnalysisAnswer(BaseModel):
    """The analyst's comparison and the findings to remember."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=10, validation_alias=AliasChoices("summary", "analysis"))
    findings: list[FindingAnswer] = Field(min_length=1, max_length=5)


def read_json(text: str, model: type[T], finish_reason: str = "stop") -> tuple[T | None, str]:
    """The first JSON object in `text` that validates as `model`, or the problem to send back."""
    if not text.strip():
        return None, "the answer was empty"
    parsed: list[Any] = []
    broken: list[str] = []                       # why each object-looking span failed to parse, with where
    for start, candidate in _json_candidates(text):
        try:
            parsed.append(json.loads(candidate, strict=False))   # a raw newline inside a string is the usual slip
        except ValueError as exc:
            if candidate.lstrip()[:1] in "{[":
                broken.append(_where(text, start, candidate, exc))
    errors = []
    for value in parsed:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, dict):
            errors.append(f"got a JSON {type(value).__name__}, not an object")
            continue
        try:
            return model.model_validate(value), ""
        except ValidationError as exc:
            errors.append(_explain(exc))
    if errors:
        return None, f"the JSON does not match the required fields: {errors[0]}"
    if finish_reason == "length" or (text.count("{") > text.count("}")):
        return None, "the JSON was cut off before it ended; answer with a shorter, complete object"
    if broken:
        return None, f"the JSON object is not valid JSON: {broken[0]}"
    if REFUSAL.search(text):
        return None, f"the answer declines the task ({_snippet(text)}); this is benign architecture research, please answer"
    return None, "no JSON object was found in the answer"


def read_module(text: str, finish_reason: str = "stop") -> tuple[str | None, str]:
    """The candidate module in `text`, or the problem to send back.

    A module with a syntax error is still returned (with a problem of "") when it is the only
    code there is: the graph's check reports the exact line and the fix loop repairs it.
    """
    if not text.strip():
        return None, "the answer was empty"
    blocks = [(lang.lower(), body) for lang, body in FENCE.findall(text)
              if lang.lower() in ("", "python", "py", "python3")]
    cut_off = finish_reason == "length" or (text.count("```") % 2 == 1)
    source = None
    if blocks:
        with_entry = [body for _, body in blocks if re.search(r"^def build_model\b", body, re.MULTILINE)]
        source = with_entry[-1] if with_entry else max((body for _, body in blocks), key=len)
    else:
        source = _unfenced_module(text)
    if source is None:
        if REFUSAL.search(text):
            return None, f"the answer declines the task ({_snippet(text)}); this is benign architecture research, please write the module"
        return None, "no Python module was found in the answer; reply with the whole module in one ```python block"
    source = source.strip("\n") + "\n"
    if len(source.encode()) > MAX_SOURCE_BYTES:
        return None, (f"the module is {len(source.encode())} bytes, over the {MAX_SOURCE_BYTES}-byte limit; "
                      f"write a compact module")
    if cut_off and not (_parses(source) and re.search(r"^def build_model\b", source, re.MULTILINE)):
        return None, "the module was cut off before it ended; reply with the whole module, written more compactly"
    if not re.search(r"^def build_model\b", source, re.MULTILINE) and len(blocks) > 1:
        return None, "none of the code blocks defines build_model(spec); reply with the whole module in one block"
    return source, ""


def _unfenced_module(text: str) -> str | None:
    if _parses(text) and "build_model" in text:
        return text
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if CODE_START.match(line)), None)
    if start is None:
        return None
    body = lines[start:]
    for end in range(len(body), max(0, len(body) - 40), -1):   # drop trailing prose, a line at a time
        candidate = "\n".join(body[:end])
        if _parses(candidate) and "build_model" in candidate:
            return candidate
    candidate = "\n".join(body)
    return candidate if "def build_model" in candidate else None


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def _json_candidates(text: str) -> list[tuple[int, str]]:
    """(offset in `text`, span) of everything that may be the JSON answer, most likely first."""
    stripped = text.strip()
    found = [(text.index(stripped), stripped)]
    found += [(m.start(2), m.group(2)) for m in FENCE.finditer(text) if m.group(1).lower() in ("", "json")]
    found += _balanced_objects(text)
    return found


def _where(text: str, start: int, candidate: str, exc: ValueError) -> str:
    """`json`'s complaint placed in the whole answer: line, column, the text around it, and a hint."""
    if not isinstance(exc, json.JSONDecodeError):
        return str(exc)
    at = start + exc.pos
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    near = " ".join(text[max(0, at - 30):at + 20].split())
    hint = ""
    if re.search(r"\d,\d{3}", text[max(0, at - 12):at + 8]):
        hint = "; write numbers as plain JSON numbers, without thousands separators (78848, not 78,848)"
    elif re.search(r"[+-]?\b(?:nan|inf|infinity)\b", text[max(0, at - 8):at + 12], re.IGNORECASE):
        hint = "; JSON has no NaN or Infinity: leave such a value out"
    elif text[at:at + 1] == "'" or text[at:at + 1].isalpha():
        hint = "; JSON needs double quotes around every key and string"
    return f"{exc.msg} at line {line}, column {column} of the answer (near `{near}`){hint}"


def _balanced_objects(text: str, limit: int = 5) -> list[tuple[int, str]]:
    """Top-level `{...}` spans, skipping braces inside JSON strings."""
    spans, depth, start, in_string, escaped = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"' and depth > 0:
            in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append((start, text[start:i + 1]))
                if len(spans) >= limit:
                    break
    return spans


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:4]:
        where = ".".join(str(p) for p in error["loc"]) or "the object"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _snippet(text: str) -> str:
    return " ".join(text.split())[:120]
