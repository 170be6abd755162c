"""Provider dialects: one translator per API dialect behind the seam in `base`.

A dialect says which client endpoints it serves, builds the upstream request, classifies an
upstream error, translates whole answers and gives a filter per stream (pass-through with usage
observed, or a translator fed chunk by chunk). Translators are pure, one module per direction
(anthropic_*, messages_*, gemini_*, bedrock_*). Adding a dialect is a module here, its name in
`config.values.Provider` and `config.presets`, and its adapter in `catalog`; the request path
never branches on a provider name. Bedrock's signer and event-stream parser come from the
optional botocore extra, loaded on first use.
Level: pure.
May import: config, core
"""
