"""The `openai` backend: planner, coder and analyst as models behind any OpenAI-compatible endpoint.

- `client`: one chat call with retries, the structured-output fallback, a concurrency limit,
  token and cost accounting, events;
- `completion`: what a server answered, of any shape, reduced to the text the engine reads;
- `answers`: the structured answers (pydantic) and a tolerant reader for free text;
- `prompts`: the templates in `agents/prompts/`;
- `engine`: `OpenAIEngine`, the `ResearchEngine` the graph talks to (stateless between calls);
- `preflight`: key, endpoint and models checked with one cheap request before the first job;
- `usage`: tokens and cost per role from a run's events;
- `fake`: a strict loopback fake of the endpoint, for tests.

Imports `knowledge`, `evaluators` and `wire`, never `archlab` (settings arrive
as an object).
"""
