"""The review page (`archlab ui`): watch runs, compare candidates, decide reviews before compute is spent.

`app` (the routes, reading runs only through `archlab.runstore` and deciding through
`archlab.reviews`), `views` (what each page shows, ranked by `agents.scoring`), `plots`
(server-rendered SVG), `security` (loopback, token, CSRF, headers), `server` (bind and serve).
Templates and static files are package data; nothing is fetched from anywhere else.
"""
