"""The `openai` backend: planner, coder and analyst as models behind any OpenAI-compatible endpoint.

- `client`: one chat call with retries, a concurrency limit, token and cost accounting, events;
- `answers`: the structured answers (pydantic) and a tolerant reader for free text;
- `prompts`: the templates in `agents/prompts/`;
- `engine`: `OpenAIEngine`, the `ResearchEngine` the graph talks to;
- `usage`: tokens and cost per role from a run's events;
- `fake`: a strict loopback fake of the endpoint, for tests.

Imports `knowledge`, `evaluators` and `wire`, never `archlab` (settings arrive
as an object).
"""
