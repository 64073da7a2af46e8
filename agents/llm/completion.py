"""What an OpenAI-compatible server answered, reduced to the text the engine reads, whatever its shape.

The `openai` client builds its response objects without validating them, so a field typed
`str` may arrive as a list, a dict, a number or None. `read_completion` never raises on any of
them; it returns an `Answered` with plain-string text (possibly empty) and, where the shape
was unusual, a `note`: one sentence saying what came back, which the engine sends to the model
when the text is unusable. Shapes covered:

- `content` as a string; as a list of parts (`{"type": "text"|"output_text", "text": ...}`,
  `{"type": "refusal", "refusal": ...}`, reasoning/thinking parts, image or audio parts that
  carry no text) or a single part; as a number or other scalar (its string);
- `content` None with `tool_calls` (function or custom) or the old `function_call`: the
  call's arguments are the text (servers that implement JSON mode as a tool call);
- a reasoning field (`reasoning_content`, `reasoning`, `thinking`) or a `<think>` block in
  the content: kept apart from the text; with no other content, the note says so;
- `refusal` set: the refusal text, `refused` true;
- an audio answer with a transcript;
- no choices (`[]`), a choice without a message, a message that is a bare string;
- usage missing, partial, or with non-integer counts: `None` counts (the client estimates).

It returns None only for bodies that are not a chat completion at all (no `choices` list,
an error object with status 200, a JSON array or string): those are transport faults that the
client re-sends. What it does not do: judge whether the text is a usable plan or module.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from openai.types.chat import ChatCompletion

TEXT_PARTS = ("text", "output_text", "input_text")
REASONING_PARTS = ("reasoning", "thinking", "reasoning_text", "summary_text")
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")
THINK = re.compile(r"^\s*<(think|thinking)>(.*?)(?:</\1>|\Z)", re.DOTALL)


@dataclass
class Answered:
    text: str                         # what the engine reads: content, else tool-call arguments, else ""
    refusal: str = ""
    reasoning: str = ""
    finish_reason: str = ""
    note: str = ""                    # "" for a plain text answer; otherwise what came back, in one sentence
    served_by: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None


def field(obj: Any, name: str) -> Any:
    """An attribute of a constructed model, a key of a dict, or an extra field the client kept; else None."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name) if isinstance(extra, dict) else None
    return value


def as_text(value: Any) -> str:
    """A string from whatever a text field holds: strings as they are, parts joined, scalars printed."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "".join(as_text(v) for v in value)
    text = field(value, "text")
    if text is not None:
        return as_text(text)
    content = field(value, "content")
    return as_text(content) if content is not None else ""


def count(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def read_parts(content: Any) -> tuple[str, str, str, list[str]]:
    """(text, refusal, reasoning, kinds of parts without text) of a content given as parts."""
    parts = content if isinstance(content, (list, tuple)) else [content]
    text, refusal, reasoning, other = [], [], [], []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
            continue
        kind = str(field(part, "type") or "text")
        if kind in TEXT_PARTS:
            text.append(as_text(field(part, "text")))
        elif kind == "refusal":
            refusal.append(as_text(field(part, "refusal")) or as_text(field(part, "text")))
        elif kind in REASONING_PARTS:
            reasoning.append(as_text(field(part, "text")) or as_text(field(part, "reasoning"))
                             or as_text(field(part, "summary")))
        elif field(part, "text") is not None:
            text.append(as_text(field(part, "text")))
        else:
            other.append(kind)
    return "".join(text), "".join(refusal), "".join(reasoning), other


def tool_text(message: Any) -> tuple[str, str]:
    """(arguments, tool name) of the first tool or function call, or ("", "")."""
    calls = field(message, "tool_calls")
    for call in calls if isinstance(calls, (list, tuple)) else []:
        function = field(call, "function")
        if function is not None:
            return as_text(field(function, "arguments")), str(field(function, "name") or "?")
        custom = field(call, "custom")
        if custom is not None:
            return as_text(field(custom, "input")), str(field(custom, "name") or "?")
    function = field(message, "function_call")
    if function is not None:
        return as_text(field(function, "arguments")), str(field(function, "name") or "?")
    return "", ""


def read_completion(response: Any) -> Answered | None:
    """The answer in a chat completion of any shape; None when the body is not a chat completion."""
    if not isinstance(response, ChatCompletion):
        return None
    choices = field(response, "choices")
    if not isinstance(choices, (list, tuple)):
        return None
    usage = field(response, "usage")
    answered = Answered(text="", served_by=as_text(field(response, "model")),
                        input_tokens=count(field(usage, "prompt_tokens")),
                        output_tokens=count(field(usage, "completion_tokens")))
    if not choices:
        answered.note = "the endpoint returned no choices (nothing was generated; a content filter may have removed it)"
        return answered
    choice = next((c for c in choices if field(c, "message") is not None), choices[0])
    answered.finish_reason = as_text(field(choice, "finish_reason"))
    message = field(choice, "message")
    if message is None:
        answered.note = f"the endpoint returned a choice without a message (finish_reason {answered.finish_reason or 'none'})"
        return answered
    if isinstance(message, str):
        answered.text = message
        return answered
    content = field(message, "content")
    notes = []
    if isinstance(content, (list, tuple, dict)) or (content is not None and not isinstance(content, str)
                                                     and field(content, "type") is not None):
        text, refusal, reasoning, other = read_parts(content)
        if other:
            notes.append(f"parts without text were ignored ({', '.join(sorted(set(other)))})")
    else:
        text, refusal, reasoning = as_text(content), "", ""
    refusal = as_text(field(message, "refusal")) or refusal
    for name in REASONING_FIELDS:
        reasoning = reasoning or as_text(field(message, name))
    think = THINK.match(text)
    if think:
        reasoning = reasoning or think.group(2)
        text = text[think.end():]
    if not text.strip():
        arguments, tool = tool_text(message)
        if arguments.strip():
            text = arguments
            notes.append(f"the answer came as a call to the tool {tool!r} instead of message content; "
                         "its arguments were read as the answer")
    if not text.strip():
        transcript = as_text(field(field(message, "audio"), "transcript"))
        if transcript.strip():
            text = transcript
    if not text.strip() and not refusal.strip():
        if reasoning.strip():
            cut = " and it ran out of output tokens (finish_reason length)" if answered.finish_reason == "length" else ""
            notes.append(f"the answer held only reasoning ({len(reasoning)} characters) and no final content{cut}; "
                         "write the answer itself after the reasoning")
        elif answered.finish_reason not in ("", "stop"):
            notes.append(f"the answer was empty (finish_reason {answered.finish_reason})")
    answered.text, answered.refusal, answered.reasoning = text, refusal, reasoning
    answered.note = "; ".join(notes)
    return answered
