"""Model gateway: model aliases, prices, provider adapters and the
`call_model` / `describe_models` activities.

Deliberately imports nothing: workflows import `activities.gateway.types`
inside the sandbox, and that must not drag httpx or the providers in.
Import `activities.gateway.activities.ModelGateway` in worker code.
"""
