"""HTTP routes, one module per resource; each route is a few lines over a
service module (`api.runs`, `api.approvals`, `api.chains`, `api.keys`)."""
