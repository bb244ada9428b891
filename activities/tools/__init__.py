"""Tools: the registry (Python functions with derived schemas, declarative
HTTP tools), the sample order desk, and the `run_tool` / `describe_tools`
activities.

Deliberately imports nothing: workflows import `activities.tools.types`
inside the sandbox, and that must not drag httpx or SQLite in. Worker code
imports `activities.tools.registry.ToolRegistry` and
`activities.tools.activities.ToolActivities`; tool authors raise
`activities.tools.errors.ToolError`.
"""
