"""The Chorus model SIMULATOR: a real HTTP server speaking the OpenAI and
Anthropic APIs, for offline demos and tests. Always labelled as a simulator.

Entry points: `app.create_app`, `server.SimulatorServer`, `server.serve`,
`control.SimulatorControl`; models in `models`.
"""
